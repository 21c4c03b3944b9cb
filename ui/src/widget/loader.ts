// widget.js, the embed script a shop puts on its pages. A classic script (no
// framework, no modules) that runs in someone else's page: it adds a launcher
// button and the chat iframe (served by the Kefu host, so the visitor's token
// and the API live in that origin, not the shop's), and exposes window.Kefu.
// Styles are inline and !important so the page's CSS cannot break them, and
// ours cannot leak; nothing here ever parses HTML. What the page passes in is
// checked by the frame (protocol.ts), which says in the console what it refused.

import { acceptFromFrame, wrap, type Command, type UserInfo } from "./protocol";
import { parseOptions, normalizeLocale, type LoaderOptions, type Settings } from "./options";
import { frameUrl } from "./fragment";
import { CommandQueue } from "./queue";
import { Emitter, type Listeners, type KefuEvent } from "./emitter";
import { launcherLabel } from "./label";

/** Sets `a:b;c:d` as inline !important declarations. */
function css(el: HTMLElement | SVGElement, style: string) {
  for (const decl of style.split(";")) {
    const i = decl.indexOf(":");
    if (i > 0) el.style.setProperty(decl.slice(0, i), decl.slice(i + 1), "important");
  }
}

const MOBILE = "(max-width: 480px)";
const CHAT_ICON =
  "M12 3C6.5 3 2 6.8 2 11.5c0 2.4 1.2 4.6 3.1 6.1L4.5 21l3.9-2c1.1.3 2.3.5 3.6.5 5.5 0 10-3.8 10-8.5S17.5 3 12 3z";
const CLOSE_ICON = "M6.4 5 5 6.4l5.6 5.6L5 17.6 6.4 19l5.6-5.6 5.6 5.6 1.4-1.4-5.6-5.6L19 6.4 17.6 5 12 10.6z";

interface KefuApi {
  setUser(userId: string, info?: { name?: string; email?: string; userHash?: string }): void;
  setAttributes(attributes: Record<string, unknown>): void;
  setLocale(locale: string): void;
  open(): void;
  close(): void;
  toggle(): void;
  reset(): void;
  on<K extends KefuEvent>(event: K, fn: Listeners[K]): () => void;
  readonly isOpen: boolean;
  readonly unread: number;
}

declare global {
  interface Window {
    Kefu?: KefuApi | { q?: unknown[][] };
    kefuSettings?: Settings;
  }
}

function findScript(): HTMLScriptElement | null {
  const current = document.currentScript;
  if (current instanceof HTMLScriptElement && current.dataset.appKey) return current;
  const all = document.querySelectorAll<HTMLScriptElement>("script[data-app-key][src]");
  return all[all.length - 1] ?? null;
}

function start(opts: LoaderOptions, previous: { q?: unknown[][] } | undefined) {
  const side = opts.position;
  const other = side === "left" ? "right" : "left";
  const color = opts.color ?? "#2563eb";
  const emitter = new Emitter();
  const queue = new CommandQueue();
  let isOpen = false;
  let unread = 0;
  let ready = false;
  // What the frame must be told again if it ever reloads.
  let user: UserInfo | null = null;
  let attributes: Record<string, unknown> | null = null;
  let locale = opts.locale;

  const el = <K extends keyof HTMLElementTagNameMap>(tag: K) => document.createElement(tag);
  const launcher = el("button");
  launcher.id = "kefu-launcher";
  launcher.type = "button";
  launcher.setAttribute("aria-haspopup", "dialog");
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("aria-hidden", "true");
  const icon = document.createElementNS("http://www.w3.org/2000/svg", "path");
  icon.setAttribute("fill", "currentColor");
  svg.appendChild(icon);
  css(svg, "all:initial;display:block;width:28px;height:28px;fill:currentColor");
  const badge = el("span");
  badge.setAttribute("aria-hidden", "true");
  launcher.append(svg, badge);
  const shadow = "0 4px 14px rgba(0,0,0,.25)";
  css(
    launcher,
    `all:initial;position:fixed;bottom:calc(20px + env(safe-area-inset-bottom, 0px));${side}:20px;width:56px;height:56px;` +
      `border-radius:50%;background:${color};color:#fff;align-items:center;justify-content:center;cursor:pointer;` +
      `box-shadow:${shadow};z-index:2147483000;box-sizing:border-box`,
  );
  css(
    badge,
    "all:initial;position:absolute;top:-2px;right:-2px;min-width:20px;height:20px;padding:0 5px;box-sizing:border-box;" +
      "border-radius:10px;background:#d92d20;color:#fff;font:600 12px/20px system-ui,sans-serif;text-align:center",
  );
  const ring = (on: boolean) => css(launcher, `box-shadow:${on ? `0 0 0 3px #fff,0 0 0 5px ${color}` : shadow}`);
  launcher.addEventListener("focus", () => ring(launcher.matches(":focus-visible")));
  launcher.addEventListener("blur", () => ring(false));

  const iframe = el("iframe");
  iframe.title = "Kefu chat";
  iframe.setAttribute(
    "sandbox",
    "allow-scripts allow-same-origin allow-forms allow-popups allow-popups-to-escape-sandbox allow-downloads",
  );
  iframe.setAttribute("allow", "clipboard-write");
  iframe.src = frameUrl(opts.host, { appKey: opts.appKey, origin: location.origin, locale, color: opts.color });
  const mobile = window.matchMedia?.(MOBILE);

  function layout() {
    const small = !!mobile?.matches;
    css(
      iframe,
      "all:initial;position:fixed;border:0;z-index:2147483000;color-scheme:normal;background:transparent;" +
        `display:${isOpen ? "block" : "none"};` +
        (small
          ? "inset:0;width:100%;height:100%;border-radius:0;box-shadow:none"
          : `top:auto;bottom:88px;${side}:20px;${other}:auto;width:380px;height:min(640px, calc(100vh - 108px));` +
            "max-width:calc(100vw - 40px);border-radius:12px;box-shadow:0 12px 40px rgba(0,0,0,.25)"),
    );
    // Full screen on a phone: the frame has its own close button.
    css(launcher, `display:${isOpen && small ? "none" : "flex"}`);
    icon.setAttribute("d", isOpen ? CLOSE_ICON : CHAT_ICON);
    launcher.setAttribute("aria-expanded", String(isOpen));
    launcher.setAttribute("aria-label", launcherLabel(locale, isOpen, unread));
    badge.textContent = unread > 99 ? "99+" : String(unread);
    css(badge, `display:${unread > 0 && !isOpen ? "block" : "none"}`);
  }
  mobile?.addEventListener?.("change", layout);

  // The frame's fallback when the browser refuses it storage: the token kept
  // in this page's localStorage (the frame asks; see the "session" event).
  const storeKey = `kefu.v1.visitor.${opts.appKey}`;
  function pageStore(token?: string | null): string | null {
    try {
      if (token === undefined) return localStorage.getItem(storeKey);
      if (token) localStorage.setItem(storeKey, token);
      else localStorage.removeItem(storeKey);
    } catch {
      /* no storage here either: the visitor lasts this page view */
    }
    return null;
  }

  const page = () => ({ url: location.href.slice(0, 2048), title: document.title.slice(0, 500) });
  const post = (c: Command) => iframe.contentWindow?.postMessage(wrap(c), opts.host);

  function setOpen(open: boolean) {
    if (open === isOpen) return;
    isOpen = open;
    layout();
    queue.push({ type: "visibility", open });
    emitter.emit(open ? "open" : "close");
    if (open) setTimeout(() => iframe.contentWindow?.focus());
    else if (document.activeElement === iframe) launcher.focus();
  }

  launcher.addEventListener("click", () => setOpen(!isOpen));

  window.addEventListener("message", (event) => {
    const e = acceptFromFrame(event, iframe.contentWindow, opts.host);
    if (!e) return;
    switch (e.type) {
      case "loaded":
        // (Again if the frame reloaded: it starts from what we know.)
        queue.pause();
        if (locale) queue.push({ type: "setLocale", locale });
        if (user) queue.push({ type: "setUser", user });
        if (attributes) queue.push({ type: "setAttributes", attributes });
        queue.flush(post, page(), isOpen, pageStore());
        break;
      case "ready":
        if (!ready) emitter.emit("ready");
        ready = true;
        break;
      case "unread":
        unread = e.count;
        layout();
        emitter.emit("unread", e.count);
        break;
      case "message":
        emitter.emit("message", e.message);
        break;
      case "close":
        setOpen(false);
        break;
      case "session":
        pageStore(e.token);
        break;
    }
  });

  // The frame cannot read the page's address; tell it when it changes (SPAs
  // navigate without events), so messages carry the page the visitor is on.
  let last = "";
  setInterval(() => {
    const p = page();
    const key = p.url + "\n" + p.title;
    if (last && key !== last) queue.push({ type: "page", page: p });
    last = key;
  }, 1500);

  const api: KefuApi = {
    setUser(userId, info = {}) {
      const u: UserInfo = { user_id: String(userId) };
      if (info.name) u.name = String(info.name);
      if (info.email) u.email = String(info.email);
      if (info.userHash) u.user_hash = String(info.userHash);
      user = u;
      queue.push({ type: "setUser", user: u });
    },
    setAttributes(attrs) {
      attributes = { ...attributes, ...attrs };
      queue.push({ type: "setAttributes", attributes: attrs });
    },
    setLocale(l) {
      const n = normalizeLocale(l);
      if (!n) return console.warn("Kefu.setLocale: en or zh-CN");
      locale = n;
      layout();
      queue.push({ type: "setLocale", locale: n });
    },
    open: () => setOpen(true),
    close: () => setOpen(false),
    toggle: () => setOpen(!isOpen),
    reset() {
      user = attributes = null;
      unread = 0;
      layout();
      queue.push({ type: "reset" });
    },
    on(event, fn) {
      const off = emitter.on(event, fn);
      if (event === "ready" && ready) setTimeout(fn);
      return off;
    },
    get isOpen() {
      return isOpen;
    },
    get unread() {
      return unread;
    },
  };
  window.Kefu = api;

  layout();
  const mount = () => document.body.append(iframe, launcher);
  if (document.body) mount();
  else document.addEventListener("DOMContentLoaded", mount);

  // Calls made through a stub before this script loaded:
  //   window.Kefu = window.Kefu || { q: [] }; Kefu.q.push(["setUser", "42", {...}]);
  for (const call of previous?.q ?? []) {
    const fn = Array.isArray(call) && call[0] !== "on" && (api as unknown as Record<string, unknown>)[String(call[0])];
    if (typeof fn === "function") fn.apply(api, call.slice(1));
  }
}

(function boot() {
  const existing = window.Kefu;
  if (existing && "open" in existing) return; // loaded twice: keep the first
  const script = findScript();
  const opts =
    script &&
    parseOptions((name) => script.getAttribute(`data-${name}`), script.getAttribute("src"), window.kefuSettings, location.href);
  if (!opts) return console.warn('Kefu: widget.js needs data-app-key="ak_…"');
  start(opts, existing as { q?: unknown[][] } | undefined);
})();
