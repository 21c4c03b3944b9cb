// The conversations store against an in-memory Kefu (a stubbed fetch) and
// frames pushed through the session, as the WebSocket would deliver them:
// the list, the queue, threads, gaps, and what a reconnect must repair.
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import type { Conversation, Message, ServerFrame } from "../../lib/types";
import { session } from "../session.svelte";
import { chats } from "./store.svelte";

const ME = "agent-me";

function conv(id: string, over: Partial<Conversation> = {}): Conversation {
  return {
    id,
    app_id: "app",
    visitor: { id: `v-${id}`, name: `Visitor ${id}`, email: null, attributes: {} },
    status: "open",
    assignee_id: ME,
    last_seq: 0,
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

function msg(convId: string, seq: number, over: Partial<Message> = {}): Message {
  return {
    id: `${convId}-${seq}`,
    conversation_id: convId,
    seq,
    client_msg_id: null,
    kind: "text",
    sender: { type: "visitor", id: `v-${convId}`, name: "V" },
    content: `m${seq}`,
    meta: {},
    attachment: null,
    created_at: 1000 + seq,
    ...over,
  };
}

/** A tiny server: conversations, their messages, the queue; records requests. */
class FakeServer {
  convs = new Map<string, Conversation>();
  msgs = new Map<string, Message[]>();
  requests: string[] = [];
  reads: { id: string; seq: number }[] = [];

  add(c: Conversation, count: number) {
    const list = Array.from({ length: count }, (_, i) => msg(c.id, i + 1));
    this.msgs.set(c.id, list);
    this.convs.set(c.id, { ...c, last_seq: count });
  }

  post(id: string, m: Message) {
    this.msgs.get(id)!.push(m);
    const c = this.convs.get(id)!;
    this.convs.set(id, { ...c, last_seq: m.seq, unread_count: (c.unread_count ?? 0) + 1 });
  }

  async fetch(input: string, init?: RequestInit): Promise<Response> {
    const url = new URL(input, "http://kefu.test");
    const path = url.pathname.replace("/api/v1", "");
    this.requests.push(`${init?.method ?? "GET"} ${path}${url.search}`);
    const json = (body: unknown, status = 200) => new Response(JSON.stringify(body), { status });
    const q = url.searchParams;
    if (path === "/conversations") {
      // Two pages, to prove the cursor is followed.
      const all = [...this.convs.values()].sort((a, b) => (a.id < b.id ? -1 : 1));
      const start = q.get("cursor") ? Number(q.get("cursor")) : 0;
      const page = all.slice(start, start + 2);
      return json({ conversations: page, next_cursor: start + 2 < all.length ? String(start + 2) : null });
    }
    if (path === "/queue") {
      const queue = [...this.convs.values()]
        .filter((c) => c.status === "queued")
        .map((c, i) => ({ position: i + 1, waiting_ms: 1000, conversation: c }));
      return json({ total: queue.length, queue });
    }
    let m = path.match(/^\/conversations\/([^/]+)$/);
    if (m) return json({ conversation: this.convs.get(m[1]) });
    m = path.match(/^\/conversations\/([^/]+)\/messages$/);
    if (m) {
      const after = Number(q.get("after") ?? 0);
      const before = q.has("before") ? Number(q.get("before")) : Infinity;
      const limit = Number(q.get("limit") ?? 200);
      const hits = this.msgs.get(m[1])!.filter((x) => x.seq > after && x.seq < before);
      return json({ messages: q.has("before") ? hits.slice(-limit) : hits.slice(0, limit) });
    }
    m = path.match(/^\/conversations\/([^/]+)\/read$/);
    if (m) {
      const seq = JSON.parse(String(init?.body)).seq as number;
      this.reads.push({ id: m[1], seq });
      return json({ read: { conversation_id: m[1], read_seq: seq } });
    }
    return json({ error: { code: "not_found", message: "not found" } }, 404);
  }
}

function frame(f: ServerFrame) {
  (session as unknown as { dispatch(f: ServerFrame): void }).dispatch(f);
}

function welcome(reconnected: boolean) {
  for (const fn of (session as unknown as { welcomeListeners: Set<(r: boolean) => void> }).welcomeListeners) fn(reconnected);
}

async function settle() {
  for (let i = 0; i < 20; i++) await new Promise((r) => setTimeout(r, 0));
}

describe("the conversations store", () => {
  let server: FakeServer;

  beforeEach(async () => {
    server = new FakeServer();
    server.add(conv("a"), 60);
    server.add(conv("b", { unread_count: 1 }), 3);
    server.add(conv("c", { status: "queued", assignee_id: null, queued_at: 10 }), 1);
    vi.stubGlobal("fetch", (input: string, init?: RequestInit) => server.fetch(input, init));
    session.me = { id: ME, username: "me", display_name: "Me", role: "agent", status: "online", max_concurrent: 5, active: true };
    chats.start();
    await settle();
  });

  afterEach(() => {
    chats.stop();
    vi.unstubAllGlobals();
  });

  it("loads every page of the list and the queue", () => {
    expect(chats.ready).toBe(true);
    expect(Object.keys(chats.conversations).sort()).toEqual(["a", "b", "c"]);
    expect(server.requests.filter((r) => r.startsWith("GET /conversations?"))).toHaveLength(2);
    expect(chats.queue.map((e) => e.conversation.id)).toEqual(["c"]);
    expect(chats.unreadTotal).toBe(1);
  });

  it("keeps unread counts and previews right from message frames, once per seq", () => {
    const m = msg("b", 4);
    server.post("b", m);
    frame({ type: "message", message: m });
    frame({ type: "message", message: m });
    expect(chats.conversations.b.unread_count).toBe(2);
    expect(chats.conversations.b.last_message?.content).toBe("m4");
    expect(chats.unreadTotal).toBe(2);
    // My own message (another tab) does not count.
    frame({ type: "message", message: msg("b", 5, { sender: { type: "agent", id: ME, name: "Me" } }) });
    expect(chats.conversations.b.unread_count).toBe(2);
    expect(chats.conversations.b.last_seq).toBe(5);
  });

  it("moves conversations in and out of the queue from conversation frames, keeping the unread count", () => {
    frame({ type: "conversation", conversation: conv("c", { status: "open", assignee_id: "other", last_seq: 1, unread_count: undefined }) });
    expect(chats.queue).toEqual([]);
    frame({ type: "conversation", conversation: { ...conv("b", { status: "queued", assignee_id: null, queued_at: 5, last_seq: 3 }), unread_count: undefined } });
    expect(chats.queue.map((e) => e.conversation.id)).toEqual(["b"]);
    expect(chats.conversations.b.unread_count).toBe(1);
  });

  it("opens a thread at its newest page, marks it read, and loads older pages", async () => {
    await chats.open("a");
    await settle();
    const t = chats.threads.a;
    expect(t.messages.map((m) => m.seq)).toEqual(Array.from({ length: 50 }, (_, i) => i + 11));
    expect(t.hasOlder).toBe(true);
    expect(server.reads).toContainEqual({ id: "a", seq: 60 });
    await chats.loadOlder("a");
    expect(chats.threads.a.messages).toHaveLength(60);
    expect(chats.threads.a.hasOlder).toBe(false);
  });

  it("fetches what is missing when a frame skips seqs", async () => {
    await chats.open("a");
    await settle();
    for (const seq of [61, 62, 63]) server.post("a", msg("a", seq));
    frame({ type: "message", message: msg("a", 63) });
    await settle();
    const seqs = chats.threads.a.messages.map((m) => m.seq);
    expect(seqs.slice(-3)).toEqual([61, 62, 63]);
    expect(new Set(seqs).size).toBe(seqs.length);
  });

  it("resumes from what it holds: a loaded thread's last seq, else the list's", async () => {
    await chats.open("a");
    await settle();
    expect(chats.resume()).toEqual({ a: 60, b: 3, c: 1 });
  });

  it("after a reconnect, refetches the lists and fills loaded threads, with no duplicate", async () => {
    await chats.open("a");
    await settle();
    chats.close("a");
    // While away: messages, a status change, a new chat; no frames reach us.
    for (const seq of [61, 62]) server.post("a", msg("a", seq));
    server.convs.set("b", { ...server.convs.get("b")!, status: "resolved" });
    server.add(conv("d", { status: "queued", assignee_id: null, queued_at: 20 }), 2);
    // The catch-up replays one of them before the refetch answers.
    frame({ type: "message", message: msg("a", 61) });
    welcome(true);
    await settle();
    expect(chats.conversations.b.status).toBe("resolved");
    expect(chats.conversations.d).toBeDefined();
    expect(chats.queue.map((e) => e.conversation.id)).toEqual(["c", "d"]);
    const seqs = chats.threads.a.messages.map((m) => m.seq);
    expect(seqs.slice(-3)).toEqual([60, 61, 62]);
    expect(new Set(seqs).size).toBe(seqs.length);
    expect(chats.conversations.a.unread_count).toBe(server.convs.get("a")!.unread_count);
  });

  it("shows the visitor typing until a message or an off frame", () => {
    frame({ type: "typing", conversation_id: "b", on: true, sender: { type: "visitor", id: "v-b", name: "V" } });
    expect(chats.typing.b).toBeGreaterThan(Date.now());
    frame({ type: "typing", conversation_id: "a", on: true, sender: { type: "agent", id: "other", name: "O" } });
    expect(chats.typing.a).toBeUndefined();
    frame({ type: "message", message: msg("b", 4) });
    expect(chats.typing.b).toBeUndefined();
  });

  it("keeps the visitor's read marker forward-only", () => {
    frame({ type: "read", conversation_id: "b", seq: 3, sender: { type: "visitor", id: "v-b", name: "V" } });
    frame({ type: "read", conversation_id: "b", seq: 2, sender: { type: "visitor", id: "v-b", name: "V" } });
    expect(chats.conversations.b.visitor_read_seq).toBe(3);
    // My read in another tab clears the badge here.
    frame({ type: "read", conversation_id: "b", seq: 3, sender: { type: "agent", id: ME, name: "Me" } });
    expect(chats.conversations.b.unread_count).toBe(0);
  });
});

describe("the conversations store's memory", () => {
  it("keeps the 20 most recently opened threads", async () => {
    const server = new FakeServer();
    for (let i = 0; i < 22; i++) server.add(conv(`k${String(i).padStart(2, "0")}`), 2);
    vi.stubGlobal("fetch", (input: string, init?: RequestInit) => server.fetch(input, init));
    session.me = { id: ME, username: "me", display_name: "Me", role: "agent", status: "online", max_concurrent: 5, active: true };
    chats.start();
    await settle();
    for (let i = 0; i < 22; i++) await chats.open(`k${String(i).padStart(2, "0")}`);
    await settle();
    expect(Object.keys(chats.threads)).toHaveLength(20);
    expect(chats.threads.k00).toBeUndefined();
    expect(chats.threads.k21?.loaded).toBe(true);
    // A dropped thread resumes from the list again.
    expect(chats.resume().k00).toBe(2);
    chats.stop();
    vi.unstubAllGlobals();
  });
});
