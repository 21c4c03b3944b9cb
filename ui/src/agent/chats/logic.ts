// The conversations store's bookkeeping as pure functions, so that what
// decides the screen after frames, replays and refetches is unit-tested:
// a replayed or duplicated message never counts twice (everything is keyed
// by seq), and a `conversation` frame (which carries no per-agent fields)
// never wipes the unread count or the visitor's read marker.

import type { Conversation, ConversationStatus, Message } from "../../lib/types";

export type Scope = "mine" | "unassigned" | "all";
export type StatusFilter = "active" | ConversationStatus;

export interface ListFilter {
  scope: Scope;
  status: StatusFilter;
  /** Free text matched against the visitor's name and email and the preview. */
  text?: string;
}

export interface QueueEntry {
  conversation: Conversation;
  /** Since when it waits (ms), the queue's FIFO key. */
  queued_at: number;
}

/** Last activity, the list's sort key. */
export function activityAt(c: Conversation): number {
  return c.last_message_at ?? c.created_at;
}

/** Newest activity first; ties by id (newest id first), as the server lists them. */
export function sortConversations(list: readonly Conversation[]): Conversation[] {
  return list.slice().sort((a, b) => activityAt(b) - activityAt(a) || (a.id < b.id ? 1 : a.id > b.id ? -1 : 0));
}

export function matchesFilter(c: Conversation, filter: ListFilter, meId: string | null): boolean {
  if (filter.scope === "mine" && (c.assignee_id === null || c.assignee_id !== meId)) return false;
  if (filter.scope === "unassigned" && c.assignee_id !== null) return false;
  if (filter.status === "active") {
    if (c.status === "resolved") return false;
  } else if (c.status !== filter.status) return false;
  const text = filter.text?.trim().toLowerCase();
  if (text) {
    const hay = [c.visitor.name ?? "", c.visitor.email ?? "", c.last_message?.content ?? "", c.id]
      .join("\n")
      .toLowerCase();
    if (!hay.includes(text)) return false;
  }
  return true;
}

/**
 * Where a signed-in agent lands when no page is chosen: their chats when
 * they have an active one, else the queue (where new work comes from).
 */
export function landingPage(list: readonly Conversation[], meId: string | null): "chats" | "queue" {
  return list.some((c) => matchesFilter(c, { scope: "mine", status: "active", text: "" }, meId)) ? "chats" : "queue";
}

export function filterConversations(
  list: readonly Conversation[],
  filter: ListFilter,
  meId: string | null,
): Conversation[] {
  return sortConversations(list.filter((c) => matchesFilter(c, filter, meId)));
}

/** Is this message one that the agent `meId` sent (from any tab)? */
export function isMine(m: Message, meId: string | null): boolean {
  return m.sender.type === "agent" && m.sender.id === meId;
}

/**
 * Does this message count as unread for an agent? The server's rule (API.md
 * 2.9): everything above the marker the reader did not send, so system
 * events ("joined", "transferred") count too; the client must agree with
 * the counts it refetches after a reconnect.
 */
export function countsAsUnread(m: Message, meId: string | null): boolean {
  // As the server counts: never my own messages, never `event` lines.
  return !isMine(m, meId) && m.kind !== "event";
}

/**
 * A `message` frame applied to the list entry: preview, activity time,
 * head seq and unread count. A message at or below the seq the entry
 * already knows changes nothing (catch-up replays, duplicates, acks of
 * messages a refetch already counted).
 */
export function applyMessage(c: Conversation, m: Message, meId: string | null, reading: boolean): Conversation {
  if (m.seq <= c.last_seq) {
    // Known already; only fill a missing preview of the head message.
    if (m.seq === c.last_seq && !c.last_message) return { ...c, last_message: m };
    return c;
  }
  const unread = reading || !countsAsUnread(m, meId) ? (c.unread_count ?? 0) : Math.min((c.unread_count ?? 0) + 1, 100);
  // An event line keeps what a person said last as the list's preview.
  const said = m.kind !== "event" ? undefined : c.last_message && c.last_message.kind !== "event" ? c.last_message : c.last_said;
  return {
    ...c,
    last_seq: m.seq,
    last_message_at: Math.max(c.last_message_at ?? 0, m.created_at),
    last_message: m,
    last_said: said ?? undefined,
    unread_count: reading ? 0 : unread,
  };
}

/**
 * What a chat list shows for a conversation: the last thing a person said
 * (a visitor's or an agent's message, a note), not an event line such as
 * "Amy joined the conversation"; the event only when nobody has said
 * anything the client knows of.
 */
export function previewMessage(c: Conversation): Message | null | undefined {
  const last = c.last_message;
  if (last?.kind === "event" && c.last_said) return c.last_said;
  return last;
}

/**
 * A conversation from a `conversation` frame or an action's answer merged
 * into what we hold: the per-agent fields (`unread_count`,
 * `visitor_read_seq`) and the preview are absent from frames, so they are
 * kept; the head seq never moves back.
 */
export function mergeConversation(held: Conversation | undefined, incoming: Conversation): Conversation {
  if (!held) return incoming;
  const out: Conversation = { ...held, ...incoming };
  if (incoming.unread_count === undefined) out.unread_count = held.unread_count;
  if (incoming.visitor_read_seq === undefined) out.visitor_read_seq = held.visitor_read_seq;
  else out.visitor_read_seq = Math.max(incoming.visitor_read_seq, held.visitor_read_seq ?? 0);
  if (incoming.last_message === undefined || (incoming.last_message === null && held.last_message)) {
    out.last_message = held.last_message;
    out.last_said = held.last_said;
  }
  if (held.last_seq > incoming.last_seq) {
    out.last_seq = held.last_seq;
    out.last_message_at = held.last_message_at;
    out.last_message = held.last_message;
    out.last_said = held.last_said;
  }
  return out;
}

/** Is this conversation waiting in the queue (routing's FIFO)? */
export function isQueued(c: Conversation): boolean {
  return c.status === "queued" && c.assignee_id === null;
}

function queueOrder(a: QueueEntry, b: QueueEntry): number {
  return a.queued_at - b.queued_at || (a.conversation.id < b.conversation.id ? -1 : a.conversation.id > b.conversation.id ? 1 : 0);
}

/**
 * The queue after a conversation changed: added (at its `queued_at`),
 * updated, or removed when it is no longer queued. FIFO by (queued_at, id).
 */
export function updateQueue(queue: readonly QueueEntry[], c: Conversation, now = Date.now()): QueueEntry[] {
  const rest = queue.filter((e) => e.conversation.id !== c.id);
  if (!isQueued(c)) return rest;
  const held = queue.find((e) => e.conversation.id === c.id);
  const queued_at = c.queued_at ?? held?.queued_at ?? now;
  rest.push({ conversation: c, queued_at });
  return rest.sort(queueOrder);
}

/** `GET /queue` entries as QueueEntry, their `queued_at` from the server's wait when absent. */
export function queueFromServer(
  entries: readonly { waiting_ms: number; conversation: Conversation }[],
  now = Date.now(),
): QueueEntry[] {
  return entries
    .map((e) => ({ conversation: e.conversation, queued_at: e.conversation.queued_at ?? now - e.waiting_ms }))
    .sort(queueOrder);
}

/**
 * The resume map of a hello: every known conversation → the highest seq
 * held. A loaded thread holds exactly its last seq (its list entry may be
 * ahead, from a refetch, while the thread is not); otherwise the list's
 * `last_seq`, which the list has already accounted for.
 */
export function resumeMap(
  conversations: Iterable<Conversation>,
  threadLastSeq: (id: string) => number | null,
): Record<string, number> {
  const out: Record<string, number> = {};
  for (const c of conversations) {
    const held = threadLastSeq(c.id);
    out[c.id] = held ?? c.last_seq;
  }
  return out;
}

/** The unread total of the badge and the title: my open or pending chats (as /agents/me/unread). */
export function unreadTotal(list: Iterable<Conversation>, meId: string | null): number {
  let total = 0;
  for (const c of list) {
    if (c.assignee_id === meId && meId !== null && (c.status === "open" || c.status === "pending")) {
      total += c.unread_count ?? 0;
    }
  }
  return total;
}

/** My last message the visitor has read (for "Seen"): its seq, or null. */
export function seenSeq(messages: readonly Message[], visitorReadSeq: number, meId: string | null): number | null {
  for (let i = messages.length - 1; i >= 0; i--) {
    const m = messages[i];
    if (m.seq > visitorReadSeq) continue;
    if (isMine(m, meId) && m.kind !== "note") return m.seq;
  }
  return null;
}

/** The seq range to fetch to fill the gaps of a thread, or null. */
export function gapRange(missing: readonly number[]): { after: number; before: number } | null {
  if (!missing.length) return null;
  return { after: missing[0] - 1, before: missing[missing.length - 1] + 1 };
}

/** The conversation before/after `id` in `list` (Alt+↑/↓), wrapping at neither end. */
export function neighbour(list: readonly Conversation[], id: string | null, delta: 1 | -1): Conversation | null {
  if (!list.length) return null;
  const i = id ? list.findIndex((c) => c.id === id) : -1;
  if (i < 0) return delta > 0 ? list[0] : list[list.length - 1];
  return list[i + delta] ?? null;
}

/** The first visitor text line of a thread: a ticket subject's default. */
export function firstVisitorLine(messages: readonly Message[]): string {
  for (const m of messages) {
    if (m.sender.type === "visitor" && m.kind === "text" && m.content.trim()) {
      return m.content.trim().split(/\r?\n/, 1)[0] ?? "";
    }
  }
  return "";
}

export interface VisitorMeta {
  page_url?: string;
  page_title?: string;
  user_agent?: string;
  locale?: string;
}

/** The latest `meta` the widget sent with a visitor message (page, device, locale). */
export function latestVisitorMeta(messages: readonly Message[]): VisitorMeta | null {
  for (let i = messages.length - 1; i >= 0; i--) {
    const m = messages[i];
    if (m.sender.type !== "visitor" || !m.meta) continue;
    const meta = m.meta;
    const pick = (k: string) => (typeof meta[k] === "string" && meta[k] ? (meta[k] as string) : undefined);
    const out: VisitorMeta = {
      page_url: pick("page_url"),
      page_title: pick("page_title"),
      user_agent: pick("user_agent"),
      locale: pick("locale"),
    };
    if (out.page_url || out.page_title || out.user_agent || out.locale) return out;
  }
  return null;
}
