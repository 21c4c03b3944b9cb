import { describe, expect, it } from "vitest";
import { formToHours, hoursToForm, nextInterval, type BusinessHours } from "./businessHours";
import { embedSnippet, parseOrigins } from "./embed";
import { lastDays } from "./reports";
import { formToBody, moved, parseAttributes, parseKeywords, ruleToForm, type Rule } from "./rules";

describe("business hours", () => {
  const api: BusinessHours = {
    timezone: "Asia/Shanghai",
    weekly: { mon: [{ start: "09:00", end: "12:00" }, { start: "13:00", end: "18:00" }], sat: [{ start: "10:00", end: "16:00" }] },
    closed_dates: ["2026-10-01"],
  };
  it("round-trips the API object through the form", () => {
    const form = hoursToForm(api);
    expect(form.enabled).toBe(true);
    expect(form.weekly.tue).toEqual([]);
    expect(form.weekly.mon).toHaveLength(2);
    expect(formToHours(form)).toEqual(api);
  });
  it("shows 24:00 as midnight 00:00 in the editor and saves it back as 24:00", () => {
    const form = hoursToForm({ timezone: "UTC", weekly: { fri: [{ start: "18:00", end: "24:00" }] }, closed_dates: [] });
    expect(form.weekly.fri).toEqual([{ start: "18:00", end: "00:00" }]);
    expect(formToHours(form)!.weekly.fri).toEqual([{ start: "18:00", end: "24:00" }]);
  });
  it("null means always open, and a disabled form saves null", () => {
    const form = hoursToForm(null, "Europe/Berlin");
    expect(form.enabled).toBe(false);
    expect(form.timezone).toBe("Europe/Berlin");
    expect(formToHours(form)).toBeNull();
  });
  it("drops empty days and blank or repeated dates, sorting the dates", () => {
    const form = hoursToForm(api);
    form.weekly.sat = [];
    form.closedDates = ["2026-12-25", " ", "2026-10-01", "2026-12-25"];
    const out = formToHours(form)!;
    expect(Object.keys(out.weekly)).toEqual(["mon"]);
    expect(out.closed_dates).toEqual(["2026-10-01", "2026-12-25"]);
  });
  it("suggests the next interval after the last one", () => {
    expect(nextInterval([])).toEqual({ start: "09:00", end: "18:00" });
    expect(nextInterval([{ start: "09:00", end: "12:00" }])).toEqual({ start: "13:00", end: "14:00" });
    expect(nextInterval([{ start: "09:00", end: "23:30" }])).toEqual({ start: "23:00", end: "24:00" });
  });
});

describe("embed", () => {
  it("builds the script tag without a double slash", () => {
    expect(embedSnippet("http://127.0.0.1:5338/", "ak_1")).toBe('<script src="http://127.0.0.1:5338/widget.js" data-app-key="ak_1" async></script>');
  });
  it("parses origins by line, space or comma", () => {
    expect(parseOrigins("https://a.example\n https://b.example, ,https://c.example ")).toEqual(["https://a.example", "https://b.example", "https://c.example"]);
  });
});

describe("routing rules", () => {
  it("parses keywords and attributes with typed values", () => {
    expect(parseKeywords("refund, 退款\n退款，return")).toEqual(["refund", "退款", "return"]);
    expect(parseAttributes("plan=pro\nseats=5\nvip=true\nnone=null\ncode=\"5\"\n")).toEqual({
      attributes: { plan: "pro", seats: 5, vip: true, none: null, code: "5" },
      badLine: null,
    });
    expect(parseAttributes("plan=pro\noops").badLine).toBe(2);
  });
  it("round-trips a rule to the form and the request body", () => {
    const rule: Rule = {
      id: "R", name: "Refunds", position: 1, enabled: true, app_id: null, keywords: ["refund", "退款"],
      attributes: { plan: "pro", seats: 5 }, team_id: "T", agent_id: null, created_at: 0,
    };
    const form = ruleToForm(rule);
    expect(form.target).toBe("team:T");
    expect(form.attributes).toBe("plan=pro\nseats=5");
    expect(formToBody(form)).toEqual({ name: "Refunds", enabled: true, app_id: null, keywords: ["refund", "退款"], attributes: { plan: "pro", seats: 5 }, team_id: "T" });
    expect(formToBody({ ...form, target: "agent:A" })).toMatchObject({ agent_id: "A" });
    expect(formToBody({ ...form, target: "agent:A" }).team_id).toBeUndefined();
  });
  it("sends an intent condition, and null to remove one", () => {
    const rule: Rule = {
      id: "R", name: "Refund intent", position: 1, enabled: true, app_id: null, keywords: [],
      attributes: {}, team_id: "T", agent_id: null, created_at: 0, intent: "退款", intent_confidence: 0.7,
    };
    const form = ruleToForm(rule);
    expect(form.intent).toBe("退款");
    expect(formToBody(form)).toMatchObject({ intent: "退款", intent_confidence: 0.7 });
    expect(formToBody({ ...form, intent: " " })).toMatchObject({ intent: null });
    expect(formToBody({ ...form, intent: "", hadIntent: false }).intent).toBeUndefined();
  });
  it("moves a rule up and down within bounds", () => {
    expect(moved(["a", "b", "c"], "b", -1)).toEqual(["b", "a", "c"]);
    expect(moved(["a", "b", "c"], "b", 1)).toEqual(["a", "c", "b"]);
    expect(moved(["a", "b", "c"], "a", -1)).toEqual(["a", "b", "c"]);
    expect(moved(["a", "b", "c"], "c", 1)).toEqual(["a", "b", "c"]);
  });
});

describe("reports range", () => {
  it("covers N whole days ending today, across a month boundary", () => {
    expect(lastDays(7, new Date(2026, 2, 3, 15, 0))).toEqual({ from: "2026-02-25", to: "2026-03-03" });
    expect(lastDays(1, new Date(2026, 0, 1))).toEqual({ from: "2026-01-01", to: "2026-01-01" });
  });
});
