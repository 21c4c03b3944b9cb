// Pure helpers of the chat frame: the `meta` every visitor message carries
// (the agent's visitor panel shows it; docs/WIDGET.md), what the page may
// learn of a message, the unread count and where "Seen" goes.

import type { Message } from "../../lib/types";
import type { Locale } from "../../lib/i18n";
import type { PageInfo, PageMessage } from "../protocol";

export interface VisitorMeta {
  page_url?: string;
  page_title?: string;
  user_agent?: string;
  locale: Locale;
}

/** The message meta: page and device as known now; empty fields left out; cut to fit 4 KiB. */
export function buildMeta(page: PageInfo | null, locale: Locale, userAgent: string): VisitorMeta {
  const meta: VisitorMeta = { locale };
  if (page?.url && /^https?:/i.test(page.url)) meta.page_url = page.url.slice(0, 2048);
  if (page?.title) meta.page_title = page.title.slice(0, 500);
  if (userAgent) meta.user_agent = userAgent.slice(0, 500);
  return meta;
}

/** The page's view of an agent's (or the shop's automatic) message; null for anything else. */
export function toPageMessage(m: Message): PageMessage | null {
  if (m.sender.type === "visitor") return null;
  if (m.kind !== "text" && m.kind !== "image" && m.kind !== "file") return null;
  return {
    seq: m.seq,
    kind: m.kind,
    sender: { type: m.sender.type, name: m.sender.name.slice(0, 200) },
    content: m.content,
    created_at: m.created_at,
  };
}

/** Agents' messages after the visitor's read marker (as the server counts them), at most 100. */
export function unreadCount(messages: readonly Message[], readSeq: number): number {
  let n = 0;
  for (let i = messages.length - 1; i >= 0 && messages[i].seq > readSeq; i--) {
    if (messages[i].sender.type === "agent" && messages[i].kind !== "event") n++;
  }
  return Math.min(n, 100);
}

/** The seq of the visitor's last message if an agent has read up to it, else null. */
export function seenAt(messages: readonly Message[], seenSeq: number): number | null {
  for (let i = messages.length - 1; i >= 0; i--) {
    if (messages[i].sender.type === "visitor") return messages[i].seq <= seenSeq ? messages[i].seq : null;
  }
  return null;
}

/** An attachment URL the server gave, and only that (a path under /api/v1/attachments/). */
export function attachmentHref(url: string, inline = false): string | null {
  if (!/^\/api\/v1\/attachments\/[A-Za-z0-9]+\/[A-Za-z0-9]+$/.test(url)) return null;
  return inline ? `${url}?inline=1` : url;
}

/** A message needs its sender's name above it when the sender changed. */
export function showSender(prev: Message | undefined, m: Message): boolean {
  if (m.sender.type === "visitor" || m.kind === "event") return false;
  return !prev || prev.kind === "event" || prev.sender.type !== m.sender.type || prev.sender.id !== m.sender.id;
}

/** Black or white, whichever reads better on the `hex` background (the shop's color). */
export function contrastText(hex: string): string {
  let h = hex.replace("#", "");
  if (h.length === 3) h = [...h].map((c) => c + c).join("");
  const [r, g, b] = [0, 2, 4].map((i) => {
    const c = parseInt(h.slice(i, i + 2), 16) / 255;
    return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
  });
  const l = 0.2126 * r + 0.7152 * g + 0.0722 * b;
  // Contrast against white vs against black.
  return (1.05 / (l + 0.05) >= (l + 0.05) / 0.05 ? "#ffffff" : "#111111");
}
