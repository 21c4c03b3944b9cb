// The postMessage contract between the shop's page (widget.js) and the chat
// iframe (docs/WIDGET.md). Both sides run on origins they do not control the
// other of, so every message is checked for who sent it (the exact window and
// origin) and for its shape, field by field, before anything acts on it.

import type { Locale } from "../lib/i18n";

export const SOURCE = "kefu";
export const VERSION = 1;

/** Limits the frame would hit at the server anyway; checked early here. */
export const LIMITS = {
  userId: 256,
  name: 200,
  email: 320,
  userHash: 128,
  attributesBytes: 4096,
  url: 2048,
  title: 500,
  content: 16384,
} as const;

export interface PageInfo {
  url: string;
  title: string;
}

export interface UserInfo {
  user_id: string;
  name?: string;
  email?: string;
  user_hash?: string;
}

/** Page → frame. */
export type Command =
  | {
      type: "init";
      page: PageInfo;
      locale: Locale | null;
      user: UserInfo | null;
      attributes: Record<string, unknown> | null;
      reset: boolean;
      open: boolean;
      /** The visitor token the page keeps for the frame (see the `session` event), or null. */
      token: string | null;
    }
  | { type: "setUser"; user: UserInfo }
  | { type: "setAttributes"; attributes: Record<string, unknown> }
  | { type: "setLocale"; locale: Locale }
  | { type: "page"; page: PageInfo }
  | { type: "visibility"; open: boolean }
  | { type: "reset" };

/** What the page learns of a message: only what an integration needs. */
export interface PageMessage {
  seq: number;
  kind: "text" | "image" | "file";
  sender: { type: "agent" | "system"; name: string };
  content: string;
  created_at: number;
}

/** Frame → page. */
export type FrameEvent =
  | { type: "loaded" }
  | { type: "ready" }
  | { type: "message"; message: PageMessage }
  | { type: "unread"; count: number }
  | { type: "close" }
  /** Only when the frame's own storage is refused: keep this token (null: forget it). */
  | { type: "session"; token: string | null };

type Obj = Record<string, unknown>;

function isObj(v: unknown): v is Obj {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}
function str(v: unknown, max: number, min = 0): v is string {
  return typeof v === "string" && v.length >= min && v.length <= max;
}
function optStr(v: unknown, max: number): boolean {
  return v === undefined || str(v, max);
}
function count(v: unknown): v is number {
  return typeof v === "number" && Number.isSafeInteger(v) && v >= 0;
}

/** A visitor token as the server issues them (`kf_` + hex). */
export function isToken(v: unknown): v is string {
  return typeof v === "string" && /^kf_[0-9a-f]{16,128}$/.test(v);
}

export function isLocale(v: unknown): v is Locale {
  return v === "en" || v === "zh-CN";
}

/** A plain JSON object of at most LIMITS.attributesBytes serialized. */
export function isAttributes(v: unknown): v is Record<string, unknown> {
  if (!isObj(v)) return false;
  try {
    const json = JSON.stringify(v);
    return new TextEncoder().encode(json).length <= LIMITS.attributesBytes;
  } catch {
    return false;
  }
}

export function isPage(v: unknown): v is PageInfo {
  return isObj(v) && str(v.url, LIMITS.url) && /^(https?:|$)/i.test(v.url) && str(v.title, LIMITS.title);
}

export function isUser(v: unknown): v is UserInfo {
  return (
    isObj(v) &&
    str(v.user_id, LIMITS.userId, 1) &&
    optStr(v.name, LIMITS.name) &&
    optStr(v.email, LIMITS.email) &&
    (v.user_hash === undefined || (str(v.user_hash, LIMITS.userHash, 1) && /^[0-9a-f]+$/i.test(v.user_hash)))
  );
}

function envelope(data: unknown): Obj | null {
  if (!isObj(data) || data.source !== SOURCE || data.v !== VERSION || typeof data.type !== "string") return null;
  return data;
}

/** A valid command, or null. Unknown fields are dropped, never passed on. */
export function parseCommand(data: unknown): Command | null {
  const d = envelope(data);
  if (!d) return null;
  switch (d.type) {
    case "init":
      if (!isPage(d.page) || typeof d.reset !== "boolean" || typeof d.open !== "boolean") return null;
      if (d.locale !== null && !isLocale(d.locale)) return null;
      if (d.user !== null && !isUser(d.user)) return null;
      if (d.attributes !== null && !isAttributes(d.attributes)) return null;
      if (d.token !== null && !isToken(d.token)) return null;
      return {
        type: "init",
        page: { url: d.page.url, title: d.page.title },
        locale: d.locale as Locale | null,
        user: d.user ? pickUser(d.user as UserInfo) : null,
        attributes: d.attributes as Record<string, unknown> | null,
        reset: d.reset,
        open: d.open,
        token: d.token as string | null,
      };
    case "setUser":
      return isUser(d.user) ? { type: "setUser", user: pickUser(d.user) } : null;
    case "setAttributes":
      return isAttributes(d.attributes) ? { type: "setAttributes", attributes: d.attributes } : null;
    case "setLocale":
      return isLocale(d.locale) ? { type: "setLocale", locale: d.locale } : null;
    case "page":
      return isPage(d.page) ? { type: "page", page: { url: d.page.url, title: d.page.title } } : null;
    case "visibility":
      return typeof d.open === "boolean" ? { type: "visibility", open: d.open } : null;
    case "reset":
      return { type: "reset" };
  }
  return null;
}

function pickUser(u: UserInfo): UserInfo {
  const out: UserInfo = { user_id: u.user_id };
  if (u.name !== undefined) out.name = u.name;
  if (u.email !== undefined) out.email = u.email;
  if (u.user_hash !== undefined) out.user_hash = u.user_hash;
  return out;
}

function isPageMessage(v: unknown): v is PageMessage {
  return (
    isObj(v) &&
    count(v.seq) &&
    (v.kind === "text" || v.kind === "image" || v.kind === "file") &&
    isObj(v.sender) &&
    (v.sender.type === "agent" || v.sender.type === "system") &&
    str(v.sender.name, LIMITS.name) &&
    str(v.content, LIMITS.content) &&
    count(v.created_at)
  );
}

/** A valid frame event, or null. */
export function parseEvent(data: unknown): FrameEvent | null {
  const d = envelope(data);
  if (!d) return null;
  switch (d.type) {
    case "loaded":
    case "ready":
    case "close":
      return { type: d.type };
    case "unread":
      return count(d.count) ? { type: "unread", count: d.count } : null;
    case "session":
      return d.token === null || isToken(d.token) ? { type: "session", token: d.token } : null;
    case "message": {
      if (!isPageMessage(d.message)) return null;
      const m = d.message;
      return {
        type: "message",
        message: {
          seq: m.seq,
          kind: m.kind,
          sender: { type: m.sender.type, name: m.sender.name },
          content: m.content,
          created_at: m.created_at,
        },
      };
    }
  }
  return null;
}

/** Wraps a command or event in the envelope. */
export function wrap<T extends { type: string }>(body: T): T & { source: string; v: number } {
  return { source: SOURCE, v: VERSION, ...body };
}

/** The parts of a MessageEvent the checks need (a real one fits). */
export interface Incoming {
  source: unknown;
  origin: string;
  data: unknown;
}

/** Page side: only from our iframe's window AND the Kefu host's origin. */
export function acceptFromFrame(event: Incoming, frameWindow: unknown, hostOrigin: string): FrameEvent | null {
  if (!frameWindow || event.source !== frameWindow || event.origin !== hostOrigin) return null;
  return parseEvent(event.data);
}

/** Frame side: only from the parent window AND the origin the loader named. */
export function acceptFromParent(event: Incoming, parentWindow: unknown, parentOrigin: string | null): Command | null {
  if (!parentOrigin || event.source !== parentWindow || event.origin !== parentOrigin) return null;
  return parseCommand(event.data);
}
