import { describe, expect, it } from "vitest";
import { assistTurn, percent } from "./assist";
import type { Message } from "./types";

function message(sender: Message["sender"], meta: Record<string, unknown>): Message {
  return {
    id: "m", conversation_id: "c", seq: 2, client_msg_id: null, kind: "text", sender,
    content: "x", meta, attachment: null, created_at: 0,
  } as Message;
}

const bot = { type: "system", id: "assist", name: "Shop" } as Message["sender"];

describe("assistTurn", () => {
  it("reads answers and choices", () => {
    const answer = assistTurn(message(bot, { assist: { kind: "answer", confidence: 0.834, question: "怎么退货" } }));
    expect(answer?.kind).toBe("answer");
    expect(percent(answer?.confidence ?? null)).toBe("83%");
    const choices = assistTurn(
      message(bot, {
        assist: { kind: "choices", choices: [{ entry_id: "e1", question: "Q1", confidence: 0.3 }, { bad: 1 }] },
      }),
    );
    expect(choices?.choices).toEqual([{ entry_id: "e1", question: "Q1", confidence: 0.3 }]);
  });

  it("ignores other senders and unknown kinds", () => {
    expect(assistTurn(message({ type: "system", id: "system", name: "Kefu" } as Message["sender"], { assist: { kind: "answer" } }))).toBeNull();
    expect(assistTurn(message(bot, { assist: { kind: "poem" } }))).toBeNull();
    expect(assistTurn(message(bot, {}))).toBeNull();
    expect(percent(null)).toBe("—");
  });
});
