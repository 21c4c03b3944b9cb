import { describe, expect, it } from "vitest";
import { insertMessage, lastSeq, mergeMessages, missingSeqs, settlePending } from "./thread";
import type { Message } from "./types";

const msg = (seq: number, client = `c${seq}`): Message => ({
  id: `m${seq}`,
  conversation_id: "conv",
  seq,
  client_msg_id: client,
  kind: "text",
  sender: { type: "visitor", id: "v", name: "V" },
  content: `#${seq}`,
  meta: {},
  attachment: null,
  created_at: 1000 + seq,
});

describe("thread bookkeeping", () => {
  it("keeps seq order whatever the arrival order", () => {
    let list: readonly Message[] = [];
    for (const s of [3, 1, 5, 2, 4]) list = insertMessage(list, msg(s));
    expect(list.map((m) => m.seq)).toEqual([1, 2, 3, 4, 5]);
    expect(lastSeq(list)).toBe(5);
  });

  it("stores each seq once: a replay after reconnect adds nothing", () => {
    const list = mergeMessages([], [1, 2, 3].map((s) => msg(s)));
    const again = insertMessage(list, msg(2));
    expect(again).toBe(list);
    const replayed = mergeMessages(list, [2, 3, 4].map((s) => msg(s)));
    expect(replayed.map((m) => m.seq)).toEqual([1, 2, 3, 4]);
  });

  it("finds gaps, bounded", () => {
    const list = mergeMessages([], [1, 2, 5, 9].map((s) => msg(s)));
    expect(missingSeqs(list)).toEqual([3, 4, 6, 7, 8]);
    expect(missingSeqs(list, 2)).toEqual([3, 4]);
    expect(missingSeqs([])).toEqual([]);
    expect(lastSeq([])).toBe(0);
  });

  it("settles a pending message when its stored copy arrives", () => {
    const pending = [
      { client_msg_id: "a", content: "x", private: false, created_at: 1 },
      { client_msg_id: "b", content: "y", private: false, created_at: 2 },
    ];
    const settled = settlePending(pending, [msg(7, "a")]);
    expect(settled.map((p) => p.client_msg_id)).toEqual(["b"]);
  });
});
