import { describe, expect, it } from "vitest";
import type { Ticket } from "../../lib/types";
import { queryString } from "../../lib/api";
import { appendPage, applyTicketFrame, defaultFilters, matchesFilters, parseTags, restoreFilters, ticketQuery, type TicketFilters } from "./ticketList";

function ticket(number: number, extra: Partial<Ticket> = {}): Ticket {
  return {
    number, subject: `s${number}`, description: "", status: "open", priority: "normal",
    assignee_id: null, conversation_id: null, requester: {}, tags: [], via: "agent", transcript_seq: null,
    created_at: number * 1000, updated_at: number * 1000, ...extra,
  };
}

const f = (extra: Partial<TicketFilters> = {}): TicketFilters => ({ ...defaultFilters(), ...extra });

describe("ticketQuery", () => {
  it("joins several statuses in the server's order and drops empty filters", () => {
    const q = ticketQuery(f({ status: ["pending", "open"], tag: "  Shipping ", q: "  " }));
    expect(queryString(q)).toBe("?status=open%2Cpending&tag=shipping&sort=updated&limit=50");
  });
  it("leaves status out when all or none are chosen", () => {
    expect(ticketQuery(f({ status: [] })).status).toBeUndefined();
    expect(ticketQuery(f({ status: ["open", "pending", "solved", "closed"] })).status).toBeUndefined();
  });
  it("passes assignee, priority, sort and the cursor", () => {
    const q = ticketQuery(f({ status: [], assignee: "me", priority: "urgent", sort: "created", q: "退款" }), "CUR");
    expect(q).toMatchObject({ assignee: "me", priority: "urgent", sort: "created", q: "退款", cursor: "CUR" });
  });
});

describe("matchesFilters", () => {
  it("checks status, priority, tag and assignee", () => {
    expect(matchesFilters(ticket(1), f(), "A")).toBe(true);
    expect(matchesFilters(ticket(1, { status: "solved" }), f(), "A")).toBe(false);
    expect(matchesFilters(ticket(1), f({ priority: "high" }), "A")).toBe(false);
    expect(matchesFilters(ticket(1, { tags: ["vip"] }), f({ tag: "VIP" }), "A")).toBe(true);
    expect(matchesFilters(ticket(1), f({ tag: "vip" }), "A")).toBe(false);
    expect(matchesFilters(ticket(1, { assignee_id: "A" }), f({ assignee: "me" }), "A")).toBe(true);
    expect(matchesFilters(ticket(1, { assignee_id: "B" }), f({ assignee: "me" }), "A")).toBe(false);
    expect(matchesFilters(ticket(1, { assignee_id: "B" }), f({ assignee: "none" }), "A")).toBe(false);
    expect(matchesFilters(ticket(1, { assignee_id: "B" }), f({ assignee: "B" }), "A")).toBe(true);
  });
});

describe("applyTicketFrame", () => {
  const rows = [ticket(3), ticket(2), ticket(1)];
  it("moves an updated ticket to the front when sorted by update", () => {
    const out = applyTicketFrame(rows, ticket(1, { updated_at: 9000, subject: "new" }), f(), null, false);
    expect(out.map((r) => r.number)).toEqual([1, 3, 2]);
    expect(out[0].subject).toBe("new");
  });
  it("keeps the place when sorted by creation", () => {
    const out = applyTicketFrame(rows, ticket(2, { updated_at: 9000, subject: "x" }), f({ sort: "created" }), null, false);
    expect(out.map((r) => r.number)).toEqual([3, 2, 1]);
    expect(out[1].subject).toBe("x");
  });
  it("drops a ticket that no longer matches", () => {
    const out = applyTicketFrame(rows, ticket(2, { status: "solved", updated_at: 9000 }), f(), null, false);
    expect(out.map((r) => r.number)).toEqual([3, 1]);
  });
  it("inserts a new matching ticket, but not one that does not match or under a text search", () => {
    expect(applyTicketFrame(rows, ticket(4, { updated_at: 9000 }), f(), null, false).map((r) => r.number)).toEqual([4, 3, 2, 1]);
    expect(applyTicketFrame(rows, ticket(4, { status: "closed" }), f(), null, false)).toHaveLength(3);
    expect(applyTicketFrame(rows, ticket(4), f({ q: "parcel" }), null, false)).toHaveLength(3);
  });
  it("appends at the end only when the whole result is loaded", () => {
    const late = ticket(0, { updated_at: 0 });
    expect(applyTicketFrame(rows, late, f(), null, false)).toHaveLength(3);
    expect(applyTicketFrame(rows, late, f(), null, true).map((r) => r.number)).toEqual([3, 2, 1, 0]);
  });
  it("ignores a frame older than the row", () => {
    const fresh = [ticket(1, { updated_at: 5000, subject: "fresh" })];
    expect(applyTicketFrame(fresh, ticket(1, { updated_at: 4000, subject: "stale" }), f(), null, true)[0].subject).toBe("fresh");
  });
});

describe("appendPage and parseTags", () => {
  it("skips repeated tickets", () => {
    expect(appendPage([ticket(3), ticket(2)], [ticket(2), ticket(1)]).map((r) => r.number)).toEqual([3, 2, 1]);
  });
  it("splits, trims, lower-cases and dedupes tags (Chinese comma too)", () => {
    expect(parseTags(" Shipping, refund，退款 ,, shipping")).toEqual(["shipping", "refund", "退款"]);
  });
});

describe("restoreFilters", () => {
  it("keeps valid saved values and drops odd ones", () => {
    const saved = JSON.stringify({ status: ["closed", "bogus"], priority: "urgent", assignee: "me", tag: "vip", q: "退款", sort: "created" });
    expect(restoreFilters(saved)).toEqual({ status: ["closed"], priority: "urgent", assignee: "me", tag: "vip", q: "退款", sort: "created" });
    expect(restoreFilters(JSON.stringify({ priority: "huge", assignee: "<x>", sort: 3 }))).toEqual(defaultFilters());
    expect(restoreFilters("{not json")).toEqual(defaultFilters());
    expect(restoreFilters(null)).toEqual(defaultFilters());
  });
});
