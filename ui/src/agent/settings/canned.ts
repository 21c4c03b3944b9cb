// Canned replies: the object of docs/API.md §2.10, who may change one, and
// the placeholders the server fills in (shown as help in the editor).

import type { CannedReply } from "../../lib/types";
export type { CannedReply };

export const PLACEHOLDERS = [
  { text: "{visitor.name}", key: "visitor_name" },
  { text: "{visitor.first_name}", key: "visitor_first_name" },
  { text: "{visitor.email}", key: "visitor_email" },
  { text: "{visitor.attributes.KEY}", key: "visitor_attribute" },
  { text: "{agent.name}", key: "agent_name" },
  { text: "{app.name}", key: "app_name" },
  { text: "{conversation.id}", key: "conversation_id" },
  { text: "{x|fallback}", key: "fallback" },
] as const satisfies readonly { text: string; key: string }[];

/** Shared replies are the admins'; personal ones their owner's. */
export function canEdit(reply: CannedReply, me: { id: string; role: string } | null): boolean {
  if (!me) return false;
  return reply.shared ? me.role === "admin" : reply.owner_id === me.id;
}

/** `text` with `insert` put in place of the selection [start, end); the new caret position. */
export function insertAt(text: string, insert: string, start: number, end: number): { text: string; caret: number } {
  const s = Math.max(0, Math.min(start, text.length));
  const e = Math.max(s, Math.min(end, text.length));
  return { text: text.slice(0, s) + insert + text.slice(e), caret: s + insert.length };
}
