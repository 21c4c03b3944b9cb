import { describe, expect, it } from "vitest";
import { canEdit, insertAt, type CannedReply } from "./canned";

const reply = (shared: boolean, owner: string | null): CannedReply => ({
  id: "r", shortcut: "hi", title: "Hi", body: "Hello", shared, owner_id: owner, created_at: 0, updated_at: 0,
});

describe("canned replies", () => {
  it("lets admins edit shared replies and owners their own", () => {
    expect(canEdit(reply(true, null), { id: "A", role: "admin" })).toBe(true);
    expect(canEdit(reply(true, null), { id: "B", role: "agent" })).toBe(false);
    expect(canEdit(reply(false, "B"), { id: "B", role: "agent" })).toBe(true);
    expect(canEdit(reply(false, "B"), { id: "A", role: "admin" })).toBe(false);
    expect(canEdit(reply(false, "B"), null)).toBe(false);
  });
  it("inserts a placeholder at the caret, replacing a selection", () => {
    expect(insertAt("Hi !", "{visitor.name}", 3, 3)).toEqual({ text: "Hi {visitor.name}!", caret: 17 });
    expect(insertAt("Hi XX!", "{a}", 3, 5)).toEqual({ text: "Hi {a}!", caret: 6 });
    expect(insertAt("Hi", "{a}", 99, 99)).toEqual({ text: "Hi{a}", caret: 5 });
  });
});
