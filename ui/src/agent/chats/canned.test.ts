// The composer's canned-reply popup: when it opens, the highlight, the insertion, the order.
import { describe, expect, it } from "vitest";
import { cannedQuery, insertCanned, moveHighlight, rankCanned, type CannedReply } from "./canned";

const reply = (shortcut: string, title = shortcut, body = "body"): CannedReply => ({
  id: shortcut, shortcut, title, body, shared: true, owner_id: null, created_at: 0, updated_at: 0,
});

describe("canned replies", () => {
  it("opens only for a slash at the start of the draft", () => {
    expect(cannedQuery("/")).toBe("");
    expect(cannedQuery("/ref")).toBe("ref");
    expect(cannedQuery("/退款")).toBe("退款");
    expect(cannedQuery("hi /ref")).toBeNull();
    expect(cannedQuery("/ref more")).toBeNull();
    expect(cannedQuery("/a/b")).toBeNull();
    expect(cannedQuery("")).toBeNull();
  });

  it("moves the highlight with wrap-around", () => {
    expect(moveHighlight(0, 1, 3)).toBe(1);
    expect(moveHighlight(2, 1, 3)).toBe(0);
    expect(moveHighlight(0, -1, 3)).toBe(2);
    expect(moveHighlight(0, 1, 0)).toBe(0);
  });

  it("replaces the typed shortcut with the rendered text", () => {
    expect(insertCanned("/ref", "Your refund is on its way.")).toBe("Your refund is on its way.");
    expect(insertCanned("Hello ", "thanks")).toBe("Hello thanks");
  });

  it("ranks shortcut prefixes first, then other matches, by shortcut", () => {
    const list = [reply("thanks", "Thank you"), reply("refund-late", "Late refund"), reply("apology", "Sorry", "about your refund"), reply("refund")];
    expect(rankCanned(list, "/ref").map((r) => r.shortcut)).toEqual(["refund", "refund-late", "apology"]);
    expect(rankCanned(list, "").map((r) => r.shortcut)).toEqual(["apology", "refund", "refund-late", "thanks"]);
    expect(rankCanned(list, "zzz")).toEqual([]);
  });
});
