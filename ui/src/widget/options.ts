// The loader's options: from its own <script> tag's data-attributes, then
// window.kefuSettings (a page that configures in JS), checked and normalized
// so that nothing the page writes reaches a URL or a style unvalidated.

import { detectLocale, type Locale } from "../lib/i18n";

export interface LoaderOptions {
  appKey: string;
  /** The Kefu server's origin, from the script's own src. */
  host: string;
  locale: Locale | null;
  position: "left" | "right";
  color: string | null;
}

export interface Settings {
  locale?: unknown;
  position?: unknown;
  color?: unknown;
}

const APP_KEY = /^ak_[A-Za-z0-9]{1,64}$/;
const COLOR = /^#(?:[0-9a-fA-F]{3}|[0-9a-fA-F]{6})$/;

/** "zh", "zh-CN", "zh_TW" → zh-CN; "en-GB" → en; anything else → null. */
export function normalizeLocale(v: unknown): Locale | null {
  if (typeof v !== "string" || !/^(zh|en)([-_].*)?$/i.test(v.trim())) return null;
  return detectLocale([v.trim()]);
}

export function normalizeColor(v: unknown): string | null {
  return typeof v === "string" && COLOR.test(v.trim()) ? v.trim().toLowerCase() : null;
}

/** The origin of the script URL, or null if it is not http(s). */
export function hostFromSrc(src: string | null | undefined, base?: string): string | null {
  if (!src) return null;
  try {
    const url = new URL(src, base);
    return url.protocol === "http:" || url.protocol === "https:" ? url.origin : null;
  } catch {
    return null;
  }
}

/**
 * Options from the script tag's attributes (`attr(name)` reads `data-NAME`)
 * and the page's kefuSettings, which win where they are valid. Null when
 * there is no usable app key or host: the loader then does nothing.
 */
export function parseOptions(
  attr: (name: string) => string | null,
  src: string | null,
  settings: Settings | null | undefined,
  base?: string,
): LoaderOptions | null {
  const appKey = (attr("app-key") ?? "").trim();
  const host = hostFromSrc(src, base);
  if (!APP_KEY.test(appKey) || !host) return null;
  const s = settings && typeof settings === "object" ? settings : {};
  const position = s.position ?? attr("position");
  return {
    appKey,
    host,
    locale: normalizeLocale(s.locale) ?? normalizeLocale(attr("locale")),
    position: position === "left" ? "left" : "right",
    color: normalizeColor(s.color) ?? normalizeColor(attr("color")),
  };
}
