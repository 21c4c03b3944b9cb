// The tickets list's logic, kept pure so it can be tested: filters → the
// query of GET /tickets, and how a live `ticket` frame changes the loaded
// rows (update in place, insert a new match, drop one that stopped matching).
import type { Query } from "../../lib/api";
import type { Ticket, TicketPriority, TicketStatus } from "../../lib/types";

export const STATUSES: readonly TicketStatus[] = ["open", "pending", "solved", "closed"];
export const PRIORITIES: readonly TicketPriority[] = ["low", "normal", "high", "urgent"];

export type TicketSort = "updated" | "created";

export interface TicketFilters {
  status: TicketStatus[];
  priority: TicketPriority | "";
  /** "" any, "me", "none" (unassigned) or an agent id. */
  assignee: string;
  tag: string;
  q: string;
  sort: TicketSort;
}

/** What an agent expects first: the unsolved tickets, most recently touched first. */
export function defaultFilters(): TicketFilters {
  return { status: ["open", "pending"], priority: "", assignee: "", tag: "", q: "", sort: "updated" };
}

export function normalizeTag(tag: string): string {
  return tag.trim().toLowerCase();
}

/** The query of `GET /tickets` for these filters (empty values left out). */
export function ticketQuery(filters: TicketFilters, cursor?: string | null, limit = 50): Query {
  const statuses = STATUSES.filter((s) => filters.status.includes(s));
  return {
    status: statuses.length && statuses.length < STATUSES.length ? statuses.join(",") : undefined,
    priority: filters.priority || undefined,
    assignee: filters.assignee || undefined,
    tag: normalizeTag(filters.tag) || undefined,
    q: filters.q.trim() || undefined,
    sort: filters.sort,
    limit,
    cursor: cursor || undefined,
  };
}

/**
 * Whether `ticket` belongs in a list with these filters, as far as the
 * client can tell. The full-text `q` is the server's to judge (it searches
 * comments too): with a `q`, only the server's own answers enter the list.
 */
export function matchesFilters(ticket: Ticket, filters: TicketFilters, meId: string | null): boolean {
  if (filters.status.length && !filters.status.includes(ticket.status)) return false;
  if (filters.priority && ticket.priority !== filters.priority) return false;
  if (filters.assignee === "me") {
    if (!meId || ticket.assignee_id !== meId) return false;
  } else if (filters.assignee === "none") {
    if (ticket.assignee_id !== null) return false;
  } else if (filters.assignee && ticket.assignee_id !== filters.assignee) return false;
  const tag = normalizeTag(filters.tag);
  if (tag && !ticket.tags.includes(tag)) return false;
  return true;
}

function before(a: Ticket, b: Ticket, sort: TicketSort): boolean {
  if (sort === "updated" && a.updated_at !== b.updated_at) return a.updated_at > b.updated_at;
  return a.number > b.number;
}

/**
 * The rows after a `ticket` frame. `complete` says whether the loaded rows
 * are the whole result (no next page): otherwise a new ticket that would
 * sort after the last loaded row is left for "load more" to bring.
 */
export function applyTicketFrame(
  rows: readonly Ticket[],
  ticket: Ticket,
  filters: TicketFilters,
  meId: string | null,
  complete: boolean,
): Ticket[] {
  const index = rows.findIndex((r) => r.number === ticket.number);
  const matches = matchesFilters(ticket, filters, meId);
  if (index >= 0) {
    const old = rows[index];
    // Frames can arrive out of order with a fetch: never go back in time.
    if (old.updated_at > ticket.updated_at) return rows.slice();
    const rest = rows.filter((_, i) => i !== index);
    if (!matches) return rest;
    return insertSorted(rest, ticket, filters.sort, true);
  }
  if (!matches || filters.q.trim()) return rows.slice();
  return insertSorted(rows.slice(), ticket, filters.sort, complete);
}

function insertSorted(rows: Ticket[], ticket: Ticket, sort: TicketSort, mayAppend: boolean): Ticket[] {
  const at = rows.findIndex((r) => before(ticket, r, sort));
  if (at >= 0) rows.splice(at, 0, ticket);
  else if (mayAppend) rows.push(ticket);
  return rows;
}

/** Adds a fetched page, skipping tickets already shown (sort=updated may repeat one). */
export function appendPage(rows: readonly Ticket[], page: readonly Ticket[]): Ticket[] {
  const seen = new Set(rows.map((r) => r.number));
  return [...rows, ...page.filter((t) => !seen.has(t.number))];
}

/** "a, B ,a" → ["a", "b"]: the tags field as the server will store it. */
export function parseTags(text: string): string[] {
  const out: string[] = [];
  for (const part of text.split(/[,，]/)) {
    const tag = normalizeTag(part);
    if (tag && !out.includes(tag)) out.push(tag);
  }
  return out;
}

/** Filters saved as JSON, checked field by field; anything odd falls back to the default. */
export function restoreFilters(json: string | null): TicketFilters {
  const out = defaultFilters();
  if (!json) return out;
  let raw: Partial<Record<keyof TicketFilters, unknown>>;
  try {
    raw = JSON.parse(json);
  } catch {
    return out;
  }
  if (!raw || typeof raw !== "object") return out;
  if (Array.isArray(raw.status)) out.status = STATUSES.filter((s) => (raw.status as unknown[]).includes(s));
  if (typeof raw.priority === "string" && (raw.priority === "" || PRIORITIES.includes(raw.priority as TicketPriority))) {
    out.priority = raw.priority as TicketPriority | "";
  }
  if (typeof raw.assignee === "string" && /^(|me|none|[0-9A-Za-z]{26})$/.test(raw.assignee)) out.assignee = raw.assignee;
  if (typeof raw.tag === "string") out.tag = raw.tag.slice(0, 50);
  if (typeof raw.q === "string") out.q = raw.q.slice(0, 200);
  if (raw.sort === "created" || raw.sort === "updated") out.sort = raw.sort;
  return out;
}
