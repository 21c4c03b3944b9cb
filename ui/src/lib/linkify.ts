// User text as plain-text runs and safe links. The UI renders each run as a
// text node and each link as an <a> whose href is a parsed http(s) or mailto
// URL: never HTML, never a `javascript:` or `data:` URL.

export type Segment = { kind: "text"; text: string } | { kind: "link"; text: string; href: string };

// A link ends at whitespace, quotes, angle brackets, and at CJK text or
// punctuation (Chinese rarely puts a space after a URL).
const CANDIDATE =
  /\b(?:https?:\/\/|www\.)[^\s<>"'`\u3000-\u303f\u3400-\u9fff\uff00-\uffef]+|\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b/gi;
// Punctuation that usually ends a sentence rather than a URL.
const TRAILING = /[.,;:!?)\]}'"，。；：！？）」』】]+$/u;

/** A safe href for `raw`, or null. */
export function safeHref(raw: string): string | null {
  let candidate = raw;
  if (/^www\./i.test(candidate)) candidate = `https://${candidate}`;
  else if (!/^[a-z][a-z0-9+.-]*:/i.test(candidate) && /^[\w.+-]+@[\w-]+(\.[\w-]+)+$/.test(candidate)) {
    candidate = `mailto:${candidate}`;
  }
  let url: URL;
  try {
    url = new URL(candidate);
  } catch {
    return null;
  }
  if (url.protocol !== "http:" && url.protocol !== "https:" && url.protocol !== "mailto:") return null;
  return url.href;
}

export function linkify(text: string): Segment[] {
  const out: Segment[] = [];
  let last = 0;
  for (const match of text.matchAll(CANDIDATE)) {
    let raw = match[0];
    const start = match.index ?? 0;
    const trail = raw.match(TRAILING);
    if (trail) raw = raw.slice(0, raw.length - trail[0].length);
    const href = raw ? safeHref(raw) : null;
    if (!href) continue;
    if (start > last) out.push({ kind: "text", text: text.slice(last, start) });
    out.push({ kind: "link", text: raw, href });
    last = start + raw.length;
  }
  if (last < text.length) out.push({ kind: "text", text: text.slice(last) });
  return out;
}
