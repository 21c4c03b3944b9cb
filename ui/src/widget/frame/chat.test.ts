import { describe, expect, it } from "vitest";
import type { Message, ServerFrame } from "../../lib/types";
import { Chat } from "./chat.svelte";
import type { PageMessage } from "../protocol";

function msg(seq: number, type: "visitor" | "agent", extra: Partial<Message> = {}): Message {
  return {
    id: `m${seq}`,
    conversation_id: "c1",
    seq,
    client_msg_id: null,
    kind: "text",
    sender: { type, id: type === "agent" ? "a1" : "v1", name: type === "agent" ? "Amy" : "" },
    content: `m${seq}`,
    meta: {},
    attachment: null,
    created_at: seq,
    ...extra,
  };
}

function setup() {
  const events: PageMessage[] = [];
  const chat = new Chat("ak_test", "en", (m) => events.push(m));
  const internals = chat as unknown as { historyLoaded: boolean; onFrame(f: ServerFrame): void };
  internals.historyLoaded = true;
  return { chat, events, frame: (f: ServerFrame) => internals.onFrame(f) };
}

describe("the frame's thread bookkeeping", () => {
  it("keeps each seq once, in order, whatever the arrival order (catch-up racing live)", () => {
    const { chat, events } = setup();
    for (const seq of [3, 1, 3, 2, 1]) chat.add(msg(seq, seq === 2 ? "visitor" : "agent"));
    expect(chat.messages.map((m) => m.seq)).toEqual([1, 2, 3]);
    // The page hears of each new agent message once, never of the visitor's own.
    expect(events.map((e) => e.seq)).toEqual([3, 1]);
  });

  it("accepts seq gaps (notes the visitor never sees)", () => {
    const { chat } = setup();
    chat.add(msg(1, "agent"));
    chat.add(msg(5, "agent"));
    expect(chat.messages.map((m) => m.seq)).toEqual([1, 5]);
  });

  it("settles a pending message when its stored copy arrives", () => {
    const { chat } = setup();
    chat.send("hello");
    expect(chat.outgoing).toHaveLength(1);
    const id = chat.outgoing[0].client_msg_id;
    chat.add(msg(7, "visitor", { client_msg_id: id, content: "hello" }));
    expect(chat.outgoing).toHaveLength(0);
    expect(chat.messages.map((m) => m.seq)).toEqual([7]);
  });

  it("does not tell the page about history loaded at start", () => {
    const events: PageMessage[] = [];
    const chat = new Chat("ak_test", "en", (m) => events.push(m));
    chat.add(msg(1, "agent"));
    expect(events).toEqual([]);
  });

  it("counts unread agent messages after the read marker", () => {
    const { chat } = setup();
    chat.add(msg(1, "agent"));
    chat.add(msg(2, "visitor"));
    chat.add(msg(3, "agent"));
    expect(chat.unread).toBe(2);
    chat.readSeq = 1;
    expect(chat.unread).toBe(1);
  });

  it("shows an agent typing until the agent's message arrives; keeps the highest seen marker", () => {
    const { chat, frame } = setup();
    const amy = { type: "agent" as const, id: "a1", name: "Amy" };
    frame({ type: "typing", conversation_id: "c1", on: true, sender: amy });
    expect(chat.typingName).toBe("Amy");
    chat.add(msg(4, "agent"));
    expect(chat.typingName).toBeNull();
    frame({ type: "typing", conversation_id: "c1", on: true, sender: { type: "visitor", id: "v", name: "x" } });
    expect(chat.typingName).toBeNull();
    frame({ type: "read", conversation_id: "c1", seq: 9, sender: amy });
    frame({ type: "read", conversation_id: "c1", seq: 4, sender: amy });
    expect(chat.seenSeq).toBe(9);
  });

  it("a failed send can be removed", () => {
    const { chat } = setup();
    chat.send("  ");
    expect(chat.outgoing).toHaveLength(0);
    chat.send("x");
    chat.discard(chat.outgoing[0].client_msg_id);
    expect(chat.outgoing).toHaveLength(0);
  });
});
