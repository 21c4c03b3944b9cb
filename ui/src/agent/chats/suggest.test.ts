import { describe, expect, it } from "vitest";
import { cannedMeta, insertSuggestion, lastVisitorSeq, preview } from "./suggest";
import type { Message } from "../../lib/types";

function msg(seq: number, type: "visitor" | "agent" | "system", kind: Message["kind"] = "text"): Message {
  return {
    id: `m${seq}`, conversation_id: "c", seq, client_msg_id: null, kind,
    sender: { type, id: "x", name: "x" }, content: "x", meta: {}, attachment: null, created_at: 0,
  } as Message;
}

describe("reply suggestions", () => {
  it("follow the visitor's newest text message", () => {
    expect(lastVisitorSeq([])).toBe(0);
    expect(lastVisitorSeq([msg(1, "visitor"), msg(2, "agent"), msg(3, "visitor", "image"), msg(4, "system")])).toBe(1);
    expect(lastVisitorSeq([msg(1, "visitor"), msg(5, "visitor")])).toBe(5);
  });

  it("replace a blank draft and follow a written one", () => {
    expect(insertSuggestion("", "您好")).toBe("您好");
    expect(insertSuggestion("  \n", "您好")).toBe("您好");
    expect(insertSuggestion("亲，", "您好")).toBe("亲， 您好");
    expect(insertSuggestion("亲\n", "您好")).toBe("亲\n您好");
  });

  it("label a canned insert in meta, nothing else", () => {
    expect(cannedMeta("01J")).toEqual({ canned_id: "01J" });
    expect(cannedMeta(null)).toBeUndefined();
  });

  it("preview on one line, cut by characters", () => {
    expect(preview("a\n b")).toBe("a b");
    expect(preview("退".repeat(70), 10)).toBe(`${"退".repeat(9)}…`);
  });
});
