// Resume bookkeeping for one conversation's messages: kept in seq order,
// each seq once, whatever order or how many times frames arrive (catch-up
// after a reconnect, a live frame racing a REST page, an ack after later
// messages). `lastSeq` is what the client says it holds when it resumes.

import type { Message } from "./types";

/** Inserts `message` in seq order; returns the same array if its seq is already there. */
export function insertMessage(list: readonly Message[], message: Message): readonly Message[] {
  const seq = message.seq;
  let lo = 0;
  let hi = list.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (list[mid].seq < seq) lo = mid + 1;
    else hi = mid;
  }
  if (lo < list.length && list[lo].seq === seq) return list;
  const next = list.slice();
  next.splice(lo, 0, message);
  return next;
}

/** Merges a page of messages (any order) into the list. */
export function mergeMessages(list: readonly Message[], page: readonly Message[]): readonly Message[] {
  let out = list;
  for (const m of page) out = insertMessage(out, m);
  return out;
}

/** The highest seq held, 0 for none. */
export function lastSeq(list: readonly Message[]): number {
  return list.length ? list[list.length - 1].seq : 0;
}

/**
 * Seqs missing between the first and the last message held, for a reader
 * that sees every seq (agents). Visitors never see notes, so for them gaps
 * are normal and this is not used.
 */
export function missingSeqs(list: readonly Message[], limit = 100): number[] {
  const out: number[] = [];
  for (let i = 1; i < list.length && out.length < limit; i++) {
    for (let s = list[i - 1].seq + 1; s < list[i].seq && out.length < limit; s++) out.push(s);
  }
  return out;
}

/** A message typed here and not acked yet, shown at once and replaced by the stored one. */
export interface PendingMessage {
  client_msg_id: string;
  content: string;
  private: boolean;
  created_at: number;
  failed?: string;
}

/** Drops pending entries whose stored message has arrived (matched by client_msg_id). */
export function settlePending(pending: readonly PendingMessage[], list: readonly Message[]): PendingMessage[] {
  if (!pending.length) return pending as PendingMessage[];
  const stored = new Set(list.map((m) => m.client_msg_id).filter((id): id is string => !!id));
  return pending.filter((p) => !stored.has(p.client_msg_id));
}
