// The composer's reply suggestions (docs/API.md 2.19): what to fetch when,
// how an inserted suggestion joins the draft, and the `meta` a message
// carries when it was inserted from a canned reply (`meta.canned_id`,
// docs/PROTOCOL.md "Canned reply labels"), the label Kefu learns from.
import type { Message } from "../../lib/types";

export interface Suggestion {
  source: "canned" | "learnt";
  content: string;
  score: number;
  canned_id: string | null;
  shortcut: string | null;
  title: string | null;
  conversations: number | null;
}

/** The seq of the visitor's newest text message: suggestions follow it. */
export function lastVisitorSeq(messages: readonly Message[]): number {
  for (let i = messages.length - 1; i >= 0; i--) {
    const m = messages[i];
    if (m.sender.type === "visitor" && m.kind === "text") return m.seq;
  }
  return 0;
}

/** The draft after inserting a suggestion: it replaces a blank draft, else follows it. */
export function insertSuggestion(draft: string, content: string): string {
  if (!draft.trim()) return content;
  return /\s$/u.test(draft) ? draft + content : `${draft} ${content}`;
}

/** What a message carries in `meta` when a canned reply went into its draft. */
export function cannedMeta(cannedId: string | null): Record<string, unknown> | undefined {
  return cannedId ? { canned_id: cannedId } : undefined;
}

/** A one-line preview of a suggestion for its button. */
export function preview(content: string, max = 60): string {
  const line = content.replace(/\s+/gu, " ").trim();
  const chars = Array.from(line);
  return chars.length > max ? `${chars.slice(0, max - 1).join("")}…` : line;
}
