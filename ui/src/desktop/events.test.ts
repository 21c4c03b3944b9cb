import { describe, expect, it } from "vitest";
import type { Conversation, Message, Ticket } from "../lib/types";
import { Watcher } from "./events";

const ME = "01AGENTME";
const conv = (over: Partial<Conversation> = {}): Conversation => ({
  id: "01CONV",
  app_id: "01APP",
  visitor: { id: "01VIS", name: "Ann", email: null, attributes: {} },
  status: "queued",
  assignee_id: null,
  last_seq: 1,
  last_message_at: 1,
  created_at: 1,
  team_id: null,
  queued_at: null,
  opened_at: null,
  priority: "normal",
  assist: null,
  ...over,
});
const msg = (over: Partial<Message> = {}): Message => ({
  id: "m1",
  conversation_id: "01CONV",
  seq: 2,
  client_msg_id: null,
  kind: "text",
  sender: { type: "visitor", id: "01VIS", name: "Ann" },
  content: "hello?",
  meta: {},
  attachment: null,
  created_at: 1,
  ...over,
});
const ticket = (over: Partial<Ticket> = {}): Ticket => ({
  number: 7,
  subject: "Refund",
  description: "please",
  status: "open",
  priority: "normal",
  assignee_id: ME,
  conversation_id: null,
  requester: {},
  tags: [],
  via: "agent",
  transcript_seq: null,
  created_at: 1_000,
  updated_at: 1_000,
  ...over,
});

describe("desktop notification events", () => {
  const watcher = (now = 1_000) => new Watcher(() => ME, () => "Visitor", () => now);

  it("announces a chat once when it starts waiting in the queue", () => {
    const w = watcher();
    const first = w.conversation(conv({ last_message: msg() }));
    expect(first).toEqual({ kind: "queue", title: "Ann", body: "hello?", target: "01CONV" });
    expect(w.conversation(conv())).toBeNull();
    expect(w.conversation(conv({ status: "open", assignee_id: ME }))).toBeNull();
  });

  it("does not announce conversations seeded from a list", () => {
    const w = watcher();
    w.seed([conv()]);
    expect(w.conversation(conv())).toBeNull();
  });

  it("announces visitor messages in my chats only", () => {
    const w = watcher();
    expect(w.message(msg())).toBeNull(); // unknown conversation
    w.seed([conv({ status: "open", assignee_id: "01OTHER" })]);
    expect(w.message(msg())).toBeNull();
    w.conversation(conv({ status: "open", assignee_id: ME }));
    expect(w.message(msg())).toEqual({ kind: "message", title: "Ann", body: "hello?", target: "01CONV" });
    expect(w.message(msg({ sender: { type: "agent", id: ME, name: "Me" } }))).toBeNull();
    expect(w.message(msg({ kind: "note" }))).toBeNull();
    expect(w.message(msg({ kind: "event" }))).toBeNull();
    const file = msg({ kind: "file", content: "", attachment: { id: "a", name: "invoice.pdf", size: 1, mime: "application/pdf", url: "/x" } });
    expect(w.message(file)?.body).toBe("invoice.pdf");
  });

  it("uses a fallback for anonymous visitors", () => {
    const w = watcher();
    const anon = conv({ visitor: { id: "v", name: null, email: null, attributes: {} } });
    expect(w.conversation(anon)?.title).toBe("Visitor");
  });

  it("announces a ticket when it becomes mine", () => {
    const w = watcher(500_000);
    expect(w.ticket(ticket({ assignee_id: null }))).toBeNull();
    expect(w.ticket(ticket())).toEqual({ kind: "ticket", title: "#7 Refund", body: "please", target: "7" });
    expect(w.ticket(ticket({ subject: "Refund!" }))).toBeNull(); // an update, still mine
  });

  it("treats an old ticket first seen as mine as an update, a fresh one as new", () => {
    expect(watcher(500_000).ticket(ticket())).toBeNull();
    expect(watcher(10_000).ticket(ticket())?.kind).toBe("ticket");
  });
});

describe("desktop strings", () => {
  it("has every key in both languages", async () => {
    const { missingKeys } = await import("../lib/i18n");
    const { dicts } = await import("./strings");
    expect(missingKeys(dicts)).toEqual([]);
  });
});
