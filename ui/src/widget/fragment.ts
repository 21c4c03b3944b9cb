// The iframe URL's fragment: what the frame needs before any postMessage (the
// app, the parent's origin for its origin checks, locale and color). The app
// key is also in the query: the server answers the frame page with
// `frame-ancestors` from that app's allowed_origins (it is a public key); the
// rest stays in the fragment, which no server sees.

import type { Locale } from "../lib/i18n";
import { isLocale } from "./protocol";
import { normalizeColor } from "./options";

export interface FrameParams {
  appKey: string;
  /** The embedding page's origin: the only one commands are taken from. */
  origin: string | null;
  locale: Locale | null;
  color: string | null;
}

export function frameUrl(host: string, p: FrameParams): string {
  const q = new URLSearchParams({ app_key: p.appKey });
  if (p.origin) q.set("origin", p.origin);
  if (p.locale) q.set("locale", p.locale);
  if (p.color) q.set("color", p.color);
  return `${host}/widget/frame.html?app_key=${encodeURIComponent(p.appKey)}#${q.toString()}`;
}

function origin(v: string | null): string | null {
  if (!v) return null;
  try {
    const url = new URL(v);
    return (url.protocol === "http:" || url.protocol === "https:") && url.origin === v ? v : null;
  } catch {
    return null;
  }
}

/** Reads `location.hash`; an invalid field is null, never trusted. */
export function parseFragment(hash: string): FrameParams {
  const q = new URLSearchParams(hash.replace(/^#/, ""));
  const locale = q.get("locale");
  return {
    appKey: q.get("app_key") ?? "",
    origin: origin(q.get("origin")),
    locale: isLocale(locale) ? locale : null,
    color: normalizeColor(q.get("color")),
  };
}
