import { describe, expect, it } from "vitest";
import { translator } from "../../lib/i18n";
import type { TicketEvent } from "../../lib/types";
import { dicts } from "../i18n";
import { describeEvent } from "./history";

const names: Record<string, string> = { A1: "Li Lei", A2: "Wang" };
const agentName = (id: string) => names[id] ?? "";
const en = translator(dicts, "en");
const zh = translator(dicts, "zh-CN");

function ev(kind: TicketEvent["kind"], from: unknown, to: unknown, actor: TicketEvent["actor"] = { type: "agent", id: "A1" }): TicketEvent {
  return { id: 1, ticket_number: 1, actor, kind, from, to, created_at: 0 };
}

describe("describeEvent", () => {
  it("names the actor and translates enum values in both languages", () => {
    expect(describeEvent(ev("status", "open", "solved"), en, agentName).text).toBe("Li Lei changed the status from Open to Solved");
    expect(describeEvent(ev("status", "open", "solved"), zh, agentName).text).toBe("Li Lei 将状态从「待处理」改为「已解决」");
    expect(describeEvent(ev("priority", "low", "urgent"), en, agentName).text).toBe("Li Lei changed the priority from Low to Urgent");
  });
  it("shows assignees by name and unassigned as such", () => {
    expect(describeEvent(ev("assignee", null, "A2"), en, agentName).text).toBe("Li Lei changed the assignee from Unassigned to Wang");
    expect(describeEvent(ev("assignee", "A2", "ZZ"), en, agentName).text).toBe("Li Lei changed the assignee from Wang to Someone");
  });
  it("handles tags, subjects, comments, creation and unknown kinds", () => {
    expect(describeEvent(ev("tags", [], ["a", "b"]), en, agentName).text).toBe("Li Lei changed the tags from (none) to a, b");
    expect(describeEvent(ev("subject", "Old", "New"), en, agentName).text).toBe("Li Lei changed the subject from “Old” to “New”");
    expect(describeEvent(ev("comment", null, { comment_id: "c", public: true }), en, agentName).text).toBe("Li Lei sent a public reply");
    expect(describeEvent(ev("comment", null, { comment_id: "c", public: false }), en, agentName).text).toBe("Li Lei added an internal comment");
    expect(describeEvent(ev("created", null, { via: "form" }, { type: "visitor", id: "V" }), en, agentName).text).toBe("The visitor created the ticket through the offline form");
    expect(describeEvent(ev("created", null, { via: "agent" }, { type: "system", id: null }), zh, agentName).text).toBe("系统 创建了工单");
    // A kind a newer server may add.
    expect(describeEvent(ev("merged" as TicketEvent["kind"], null, null), en, agentName).text).toBe("Li Lei: merged");
  });
  it("cuts a very long subject", () => {
    const long = "x".repeat(100);
    const text = describeEvent(ev("subject", "a", long), en, agentName).text;
    expect(text.endsWith("…”")).toBe(true);
    expect(text.length).toBeLessThan(120);
  });
});
