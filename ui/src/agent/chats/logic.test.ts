// The store's decisions: frames, unread bookkeeping, queue order, resume map, list filters.
import { describe, expect, it } from "vitest";
import type { Conversation, Message } from "../../lib/types";
import {
  applyMessage,
  previewMessage,
  landingPage,
  filterConversations,
  firstVisitorLine,
  gapRange,
  latestVisitorMeta,
  mergeConversation,
  neighbour,
  queueFromServer,
  resumeMap,
  seenSeq,
  sortConversations,
  unreadTotal,
  updateQueue,
} from "./logic";

const ME = "agent-me";

function conv(id: string, over: Partial<Conversation> = {}): Conversation {
  return {
    id,
    app_id: "app",
    visitor: { id: `v-${id}`, name: `Visitor ${id}`, email: null, attributes: {} },
    status: "open",
    assignee_id: ME,
    last_seq: 3,
    last_message_at: 1000,
    created_at: 500,
    unread_count: 0,
    visitor_read_seq: 0,
    team_id: null,
    queued_at: null,
    opened_at: null,
    priority: "normal",
    assist: null,
    ...over,
  };
}

function msg(seq: number, over: Partial<Message> = {}): Message {
  return {
    id: `m${seq}`,
    conversation_id: "c1",
    seq,
    client_msg_id: null,
    kind: "text",
    sender: { type: "visitor", id: "v-c1", name: "Li" },
    content: `hello ${seq}`,
    meta: {},
    attachment: null,
    created_at: 1000 + seq,
    ...over,
  };
}

describe("landingPage", () => {
  it("is the chats when the agent has an active one, else the queue", () => {
    expect(landingPage([], ME)).toBe("queue");
    expect(landingPage([conv("a", { assignee_id: "someone-else" })], ME)).toBe("queue");
    expect(landingPage([conv("a", { status: "resolved" })], ME)).toBe("queue");
    expect(landingPage([conv("a", { status: "resolved" }), conv("b")], ME)).toBe("chats");
  });
});

describe("previewMessage", () => {
  const joined = msg(5, { kind: "event", sender: { type: "system", id: "", name: "" }, content: "Amy joined", meta: { event: "assigned" } });
  it("shows what a person said last, not an event line after it", () => {
    let c = applyMessage(conv("c1"), msg(4), ME, false);
    c = applyMessage(c, joined, ME, false);
    expect(c.last_message?.kind).toBe("event");
    expect(previewMessage(c)?.content).toBe("hello 4");
    // Two events in a row keep the same person's line.
    c = applyMessage(c, { ...joined, seq: 6, id: "m6" }, ME, false);
    expect(previewMessage(c)?.content).toBe("hello 4");
    // A person speaks: their line, and nothing kept aside.
    c = applyMessage(c, msg(7, { kind: "note", sender: { type: "agent", id: ME, name: "Me" } }), ME, false);
    expect(previewMessage(c)?.content).toBe("hello 7");
    expect(c.last_said).toBeUndefined();
  });
  it("uses the server's last_said, and the event only when nobody has spoken", () => {
    const c = conv("c1", { last_message: joined, last_said: msg(4) });
    expect(previewMessage(c)?.content).toBe("hello 4");
    expect(previewMessage(conv("c2", { last_message: joined }))?.kind).toBe("event");
    // A frame without the preview fields keeps them.
    const merged = mergeConversation(c, conv("c1", { last_seq: 5 }));
    expect(previewMessage(merged)?.content).toBe("hello 4");
  });
});

describe("applyMessage", () => {
  it("moves the head, the preview and counts a visitor message as unread", () => {
    const c = applyMessage(conv("c1"), msg(4), ME, false);
    expect(c.last_seq).toBe(4);
    expect(c.last_message?.content).toBe("hello 4");
    expect(c.last_message_at).toBe(1004);
    expect(c.unread_count).toBe(1);
  });

  it("counts a replayed or duplicated message once", () => {
    let c = conv("c1");
    c = applyMessage(c, msg(4), ME, false);
    c = applyMessage(c, msg(4), ME, false);
    c = applyMessage(c, msg(2), ME, false);
    expect(c.unread_count).toBe(1);
    expect(c.last_seq).toBe(4);
  });

  it("does not count my own messages, event lines, nor the thread I am reading (as the server)", () => {
    let c = conv("c1", { unread_count: 2 });
    c = applyMessage(c, msg(4, { sender: { type: "agent", id: ME, name: "Me" } }), ME, false);
    expect(c.unread_count).toBe(2);
    c = applyMessage(c, msg(5, { kind: "event", sender: { type: "system", id: "system", name: "Kefu" } }), ME, false);
    expect(c.unread_count).toBe(2);
    expect(c.last_seq).toBe(5);
    c = applyMessage(c, msg(6), ME, false);
    expect(c.unread_count).toBe(3);
    c = applyMessage(c, msg(7), ME, true);
    expect(c.unread_count).toBe(0);
    expect(c.last_seq).toBe(7);
  });

  it("counts another agent's note", () => {
    const c = applyMessage(conv("c1"), msg(4, { kind: "note", sender: { type: "agent", id: "other", name: "Wang" } }), ME, false);
    expect(c.unread_count).toBe(1);
  });

  it("caps the count at 100 like the server", () => {
    let c = conv("c1", { unread_count: 100 });
    c = applyMessage(c, msg(4), ME, false);
    expect(c.unread_count).toBe(100);
  });
});

describe("mergeConversation", () => {
  it("keeps per-agent fields a frame does not carry", () => {
    const held = conv("c1", { unread_count: 5, visitor_read_seq: 2, last_message: msg(3) });
    const frame = conv("c1", { status: "resolved", assignee_id: "x" });
    delete frame.unread_count;
    delete frame.visitor_read_seq;
    const out = mergeConversation(held, frame);
    expect(out.status).toBe("resolved");
    expect(out.assignee_id).toBe("x");
    expect(out.unread_count).toBe(5);
    expect(out.visitor_read_seq).toBe(2);
    expect(out.last_message?.seq).toBe(3);
  });

  it("never moves the head back", () => {
    const held = conv("c1", { last_seq: 9, last_message_at: 5000 });
    const out = mergeConversation(held, conv("c1", { last_seq: 7, last_message_at: 4000 }));
    expect(out.last_seq).toBe(9);
    expect(out.last_message_at).toBe(5000);
  });

  it("takes a refetch's unread count as the truth", () => {
    const out = mergeConversation(conv("c1", { unread_count: 5 }), conv("c1", { unread_count: 1 }));
    expect(out.unread_count).toBe(1);
  });
});

describe("list", () => {
  const list = [
    conv("a", { last_message_at: 100, assignee_id: ME }),
    conv("b", { last_message_at: 300, assignee_id: null, status: "queued" }),
    conv("c", { last_message_at: null, created_at: 200, assignee_id: "other", status: "pending" }),
    conv("d", { last_message_at: 400, assignee_id: ME, status: "resolved" }),
  ];

  it("sorts by last activity, newest first", () => {
    expect(sortConversations(list).map((c) => c.id)).toEqual(["d", "b", "c", "a"]);
  });

  it("filters mine / unassigned / all and by status", () => {
    const ids = (scope: "mine" | "unassigned" | "all", status: "active" | "open" | "pending" | "resolved" | "queued") =>
      filterConversations(list, { scope, status }, ME).map((c) => c.id);
    expect(ids("mine", "active")).toEqual(["a"]);
    expect(ids("mine", "resolved")).toEqual(["d"]);
    expect(ids("unassigned", "active")).toEqual(["b"]);
    expect(ids("all", "active")).toEqual(["b", "c", "a"]);
    expect(ids("all", "pending")).toEqual(["c"]);
  });

  it("filters by text in the name, email or preview", () => {
    const l = [conv("x", { visitor: { id: "v", name: "Zhang San", email: "z@example.com", attributes: {} } }), conv("y")];
    expect(filterConversations(l, { scope: "all", status: "active", text: "zhang" }, ME).map((c) => c.id)).toEqual(["x"]);
    expect(filterConversations(l, { scope: "all", status: "active", text: "EXAMPLE" }, ME).map((c) => c.id)).toEqual(["x"]);
  });

  it("steps to the neighbour for Alt+arrows", () => {
    const sorted = sortConversations(list);
    expect(neighbour(sorted, "b", 1)?.id).toBe("c");
    expect(neighbour(sorted, "b", -1)?.id).toBe("d");
    expect(neighbour(sorted, "d", -1)).toBeNull();
    expect(neighbour(sorted, null, 1)?.id).toBe("d");
  });

  it("sums my unread of open and pending chats", () => {
    const l = [
      conv("a", { unread_count: 2 }),
      conv("b", { unread_count: 3, status: "pending" }),
      conv("c", { unread_count: 7, status: "resolved" }),
      conv("d", { unread_count: 4, assignee_id: "other" }),
    ];
    expect(unreadTotal(l, ME)).toBe(5);
    expect(unreadTotal(l, null)).toBe(0);
  });
});

describe("queue", () => {
  it("keeps FIFO order by queued_at and drops what is no longer queued", () => {
    let q = queueFromServer(
      [
        { waiting_ms: 1000, conversation: conv("a", { status: "queued", assignee_id: null, queued_at: 9000 }) },
        { waiting_ms: 5000, conversation: conv("b", { status: "queued", assignee_id: null, queued_at: null }) },
      ],
      10_000,
    );
    expect(q.map((e) => e.conversation.id)).toEqual(["b", "a"]);
    expect(q[0].queued_at).toBe(5000);
    q = updateQueue(q, conv("c", { status: "queued", assignee_id: null, queued_at: 7000 }));
    expect(q.map((e) => e.conversation.id)).toEqual(["b", "c", "a"]);
    q = updateQueue(q, conv("b", { status: "open", assignee_id: ME }));
    expect(q.map((e) => e.conversation.id)).toEqual(["c", "a"]);
    // An update of a queued one keeps its place.
    q = updateQueue(q, conv("c", { status: "queued", assignee_id: null, queued_at: 7000, last_seq: 9 }));
    expect(q.map((e) => e.conversation.id)).toEqual(["c", "a"]);
    expect(q[0].conversation.last_seq).toBe(9);
  });
});

describe("resumeMap", () => {
  it("uses a loaded thread's last seq, else the list's last_seq", () => {
    const map = resumeMap([conv("a", { last_seq: 10 }), conv("b", { last_seq: 4 })], (id) => (id === "a" ? 8 : null));
    expect(map).toEqual({ a: 8, b: 4 });
  });
});

describe("thread helpers", () => {
  it("finds my last message the visitor has seen", () => {
    const mine = { type: "agent" as const, id: ME, name: "Me" };
    const ms = [msg(1), msg(2, { sender: mine }), msg(3, { sender: mine }), msg(4, { sender: mine, kind: "note" }), msg(5, { sender: mine })];
    expect(seenSeq(ms, 4, ME)).toBe(3);
    expect(seenSeq(ms, 1, ME)).toBeNull();
    expect(seenSeq(ms, 5, ME)).toBe(5);
  });

  it("turns missing seqs into one range to fetch", () => {
    expect(gapRange([])).toBeNull();
    expect(gapRange([4, 5, 9])).toEqual({ after: 3, before: 10 });
  });

  it("takes the first visitor text line for a ticket subject", () => {
    const ms = [msg(1, { kind: "event", sender: { type: "system", id: "system", name: "Kefu" } }), msg(2, { content: "\n  Parcel missing\nsince Monday" })];
    expect(firstVisitorLine(ms)).toBe("Parcel missing");
  });

  it("reads the latest visitor meta", () => {
    const ms = [
      msg(1, { meta: { page_url: "https://shop/a", user_agent: "UA1" } }),
      msg(2, { meta: { page_url: "https://shop/b" } }),
      msg(3, { sender: { type: "agent", id: ME, name: "Me" }, meta: { page_url: "https://evil" } }),
      msg(4, { meta: {} }),
    ];
    expect(latestVisitorMeta(ms)?.page_url).toBe("https://shop/b");
    expect(latestVisitorMeta([msg(1, { meta: { page_url: 5 } })])).toBeNull();
  });
});
