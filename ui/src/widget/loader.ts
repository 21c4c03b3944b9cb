// widget.js, the embed script a shop puts on its pages. A classic script (no
// framework, no modules) that runs in someone else's page: it adds a launcher
// button and the chat iframe (served by the Kefu host, so the visitor's token
// and the API live in that origin, not the shop's), and exposes window.Kefu.
// Styles are inline and !important so the page's CSS cannot break them, and
// ours cannot leak; nothing here ever parses HTML.

import { acceptFromFrame, wrap, isAttributes, isUser, type Command, type PageMessage, type UserInfo } from "./protocol";
import { parseOptions, normalizeLocale, type LoaderOptions, type Settings } from "./options";
import { frameUrl } from "./fragment";
import { CommandQueue } from "./queue";
import { Emitter, type Listeners, type KefuEvent } from "./emitter";
import { launcherLabel } from "./label";

type Style = Record<string, string>;

function css(el: HTMLElement | SVGElement, style: Style) {
  for (const [k, v] of Object.entries(style)) el.style.setProperty(k, v, "important");
}

const Z = "2147483000";
const MOBILE = "(max-width: 480px)";

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
  return all.length ? all[all.length - 1] : null;
}

function chatIcon(): SVGSVGElement {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("width", "28");
  svg.setAttribute("height", "28");
  svg.setAttribute("aria-hidden", "true");
  svg.setAttribute("focusable", "false");
  const path = document.createElementNS(ns, "path");
  path.setAttribute("fill", "currentColor");
  path.setAttribute(
    "d",
    "M12 3C6.5 3 2 6.8 2 11.5c0 2.4 1.2 4.6 3.1 6.1L4.5 21l3.9-2c1.1.3 2.3.5 3.6.5 5.5 0 10-3.8 10-8.5S17.5 3 12 3z",
  );
  svg.appendChild(path);
  css(svg, { display: "block", width: "28px", height: "28px" });
  return svg;
}

function start(opts: LoaderOptions, previous: { q?: unknown[][] } | undefined) {
  const side = opts.position;
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

  const launcher = document.createElement("button");
  launcher.id = "kefu-launcher";
  launcher.type = "button";
  launcher.setAttribute("aria-haspopup", "dialog");
  launcher.setAttribute("aria-expanded", "false");
  launcher.appendChild(chatIcon());
  const badge = document.createElement("span");
  badge.setAttribute("aria-hidden", "true");
  launcher.appendChild(badge);
  css(launcher, {
    all: "initial",
    position: "fixed",
    bottom: "calc(20px + env(safe-area-inset-bottom, 0px))",
    [side]: "20px",
    width: "56px",
    height: "56px",
    "border-radius": "50%",
    background: color,
    color: "#fff",
    display: "flex",
    "align-items": "center",
    "justify-content": "center",
    cursor: "pointer",
    "box-shadow": "0 4px 14px rgba(0,0,0,.25)",
    "z-index": Z,
    "box-sizing": "border-box",
  });
  css(badge, {
    all: "initial",
    position: "absolute",
    top: "-2px",
    right: "-2px",
    "min-width": "20px",
    height: "20px",
    padding: "0 5px",
    "box-sizing": "border-box",
    "border-radius": "10px",
    background: "#d92d20",
    color: "#fff",
    font: "600 12px/20px system-ui, sans-serif",
    "text-align": "center",
    display: "none",
  });
  const ring = (on: boolean) =>
    css(launcher, { "box-shadow": on ? `0 0 0 3px #fff, 0 0 0 5px ${color}` : "0 4px 14px rgba(0,0,0,.25)" });
  launcher.addEventListener("focus", () => ring(launcher.matches(":focus-visible")));
  launcher.addEventListener("blur", () => ring(false));

  const iframe = document.createElement("iframe");
  iframe.title = "Kefu chat";
  iframe.setAttribute(
    "sandbox",
    "allow-scripts allow-same-origin allow-forms allow-popups allow-popups-to-escape-sandbox allow-downloads",
  );
  iframe.setAttribute("allow", "clipboard-write");
  iframe.setAttribute("referrerpolicy", "no-referrer");
  iframe.src = frameUrl(opts.host, {
    appKey: opts.appKey,
    origin: location.origin,
    locale: opts.locale,
    color: opts.color,
  });
  const mobile = window.matchMedia ? window.matchMedia(MOBILE) : null;

  function layout() {
    const small = !!mobile?.matches;
    css(iframe, {
      all: "initial",
      position: "fixed",
      border: "0",
      "z-index": Z,
      background: "transparent",
      "color-scheme": "normal",
      display: isOpen ? "block" : "none",
      ...(small
        ? {
            top: "0",
            left: "0",
            right: "0",
            bottom: "0",
            width: "100%",
            height: "100%",
            "border-radius": "0",
            "box-shadow": "none",
          }
        : {
            top: "auto",
            bottom: "88px",
            [side]: "20px",
            [side === "left" ? "right" : "left"]: "auto",
            width: "380px",
            height: "min(640px, calc(100vh - 108px))",
            "max-width": "calc(100vw - 40px)",
            "border-radius": "12px",
            "box-shadow": "0 12px 40px rgba(0,0,0,.25)",
          }),
    });
    // Full screen on a phone: the frame has its own close button.
    css(launcher, { display: isOpen && small ? "none" : "flex" });
    launcher.setAttribute("aria-expanded", String(isOpen));
    launcher.setAttribute("aria-label", launcherLabel(locale, isOpen, unread));
    badge.textContent = unread > 99 ? "99+" : String(unread);
    css(badge, { display: unread > 0 && !isOpen ? "block" : "none" });
  }
  mobile?.addEventListener?.("change", layout);

  // The frame's fallback when the browser refuses it storage: the token kept
  // in this page's localStorage (the frame asks; see the "session" event).
  const storeKey = `kefu.v1.visitor.${opts.appKey}`;
  function pageStore(op: "get" | "set", token: string | null = null): string | null {
    try {
      if (op === "get") return localStorage.getItem(storeKey);
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
    if (open) setTimeout(() => iframe.contentWindow?.focus(), 0);
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
        queue.flush(post, page(), isOpen, pageStore("get"));
        break;
      case "ready":
        if (!ready) {
          ready = true;
          emitter.emit("ready");
        }
        break;
      case "unread":
        unread = e.count;
        layout();
        emitter.emit("unread", e.count);
        break;
      case "message":
        emitter.emit("message", e.message as PageMessage);
        break;
      case "close":
        setOpen(false);
        break;
      case "session":
        pageStore("set", e.token);
        break;
    }
  });

  // The frame cannot read the page's address; tell it when it changes (SPAs
  // navigate without events), so messages carry the page the visitor is on.
  let last = "";
  setInterval(() => {
    const p = page();
    const key = p.url + "\n" + p.title;
    if (key !== last && last) queue.push({ type: "page", page: p });
    last = key;
  }, 1500);

  const api: KefuApi = {
    setUser(userId, info = {}) {
      const u: UserInfo = { user_id: String(userId) };
      if (info.name) u.name = String(info.name);
      if (info.email) u.email = String(info.email);
      if (info.userHash) u.user_hash = String(info.userHash);
      if (!isUser(u)) return console.warn("Kefu.setUser: invalid user id, name, email or userHash");
      user = u;
      queue.push({ type: "setUser", user: u });
    },
    setAttributes(attrs) {
      if (!isAttributes(attrs)) return console.warn("Kefu.setAttributes: a JSON object of at most 4 KB");
      attributes = { ...(attributes ?? {}), ...attrs };
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
      user = null;
      attributes = null;
      unread = 0;
      layout();
      queue.push({ type: "reset" });
    },
    on(event, fn) {
      const off = emitter.on(event, fn);
      if (event === "ready" && ready) setTimeout(() => (fn as () => void)(), 0);
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
  const mount = () => {
    document.body.appendChild(iframe);
    document.body.appendChild(launcher);
  };
  if (document.body) mount();
  else document.addEventListener("DOMContentLoaded", mount);

  // Calls made through a stub before this script loaded:
  //   window.Kefu = window.Kefu || { q: [] }; Kefu.q.push(["setUser", "42", {...}]);
  for (const call of previous?.q ?? []) {
    if (!Array.isArray(call) || typeof call[0] !== "string") continue;
    const fn = (api as unknown as Record<string, unknown>)[call[0]];
    if (typeof fn === "function" && call[0] !== "on") (fn as (...a: unknown[]) => void).apply(api, call.slice(1));
  }
}

(function boot() {
  const existing = window.Kefu;
  if (existing && "open" in existing) return; // loaded twice: keep the first
  const script = findScript();
  if (!script) return;
  const opts = parseOptions(
    (name) => script.getAttribute(`data-${name}`),
    script.getAttribute("src"),
    window.kefuSettings,
    location.href,
  );
  if (!opts) {
    console.warn("Kefu: widget.js needs data-app-key=\"ak_…\"");
    return;
  }
  start(opts, existing as { q?: unknown[][] } | undefined);
})();
