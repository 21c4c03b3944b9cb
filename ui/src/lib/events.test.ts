import { describe, expect, it } from "vitest";
import { eventDicts, eventText, type EventKey } from "./events";
import { missingKeys, translator, type Locale } from "./i18n";
import { dicts as workstation } from "../agent/i18n";
import { dicts as widget } from "../widget/frame/i18n";

const en = translator(widget, "en");
const zh = translator(widget, "zh-CN");

/** An event line as the server stores it (docs/API.md, "Event lines"). */
function line(meta: Record<string, unknown>, content = "English fallback from the server") {
  return { content, meta };
}

const assigned = line(
  { event: "assigned", agent_id: "01A", agent_name: "Amy", by: "claim" },
  "Amy joined the conversation",
);
const toAgent = line(
  { event: "transferred", by_agent_id: "01A", by_agent_name: "Amy", to_agent_id: "01B", to_agent_name: "小王" },
  "Amy transferred the conversation to 小王",
);
const toTeam = line(
  { event: "transferred", by_agent_id: "01A", by_agent_name: "Amy", to_team_id: "01T", to_team_name: "Billing" },
  "Amy transferred the conversation to the Billing team",
);

describe("event lines", () => {
  it("word every event code in English as the server does", () => {
    // The server's English `content` and ours must agree word for word.
    expect(eventText(assigned, en)).toBe(assigned.content);
    expect(eventText(toAgent, en)).toBe(toAgent.content);
    expect(eventText(toTeam, en)).toBe(toTeam.content);
  });

  it("word every event code in Chinese", () => {
    expect(eventText(assigned, zh)).toBe("Amy 已加入对话");
    expect(eventText(toAgent, zh)).toBe("Amy 已将对话转接给 小王");
    expect(eventText(toTeam, zh)).toBe("Amy 已将对话转接给 Billing 团队");
  });

  it("read the same in the workstation as in the widget", () => {
    for (const locale of ["en", "zh-CN"] as Locale[]) {
      const a = translator(widget, locale);
      const b = translator(workstation, locale);
      for (const m of [assigned, toAgent, toTeam]) expect(eventText(m, b)).toBe(eventText(m, a));
    }
  });

  it("show the stored content for an unknown event or a meta that is not one", () => {
    expect(eventText(line({ event: "merged", agent_name: "Amy" }, "Amy merged two chats"), zh)).toBe("Amy merged two chats");
    expect(eventText(line({}, "Something happened"), zh)).toBe("Something happened");
    expect(eventText(line({ event: 7 }, "x"), zh)).toBe("x");
    expect(eventText({ content: "null meta", meta: null as unknown as Record<string, unknown> }, zh)).toBe("null meta");
    expect(eventText({ content: "array meta", meta: [] as unknown as Record<string, unknown> }, zh)).toBe("array meta");
  });

  it("show the stored content when a parameter is missing, blank or not a string", () => {
    // Lines stored before the names were in meta had only the ids.
    const old = line({ event: "assigned", agent_id: "01A", by: "auto" }, "Amy joined the conversation");
    expect(eventText(old, zh)).toBe("Amy joined the conversation");
    expect(eventText(line({ event: "assigned", agent_name: "  " }, "c1"), zh)).toBe("c1");
    expect(eventText(line({ event: "assigned", agent_name: 42 }, "c2"), zh)).toBe("c2");
    expect(eventText(line({ event: "transferred", to_agent_name: "Bo" }, "c3"), zh)).toBe("c3");
    expect(eventText(line({ event: "transferred", by_agent_name: "Amy" }, "c4"), zh)).toBe("c4");
    // Both targets at once is not a line we can word honestly.
    expect(eventText(line({ event: "transferred", by_agent_name: "A", to_agent_name: "B", to_team_name: "T" }, "c5"), zh)).toBe("c5");
  });

  it("insert names as they are: no placeholder or markup is interpreted", () => {
    const tricky = line({ event: "transferred", by_agent_name: "{agent}", to_agent_name: "<img src=x onerror=alert(1)>" });
    expect(eventText(tricky, en)).toBe("{agent} transferred the conversation to <img src=x onerror=alert(1)>");
    expect(eventText(line({ event: "assigned", agent_name: "$& {team}" }), zh)).toBe("$& {team} 已加入对话");
  });

  it("has every string in both languages, with the same placeholders, in both apps' dictionaries", () => {
    expect(missingKeys(eventDicts)).toEqual([]);
    const names = (s: string) => [...s.matchAll(/\{(\w+)\}/g)].map((m) => m[1]).sort();
    for (const key of Object.keys(eventDicts.en) as EventKey[]) {
      const text = eventDicts.en[key];
      expect(names(eventDicts["zh-CN"][key]), key).toEqual(names(text));
      for (const locale of ["en", "zh-CN"] as Locale[]) {
        expect(widget[locale][key], `widget ${locale} ${key}`).toBe(eventDicts[locale][key]);
        expect(workstation[locale][key], `workstation ${locale} ${key}`).toBe(eventDicts[locale][key]);
      }
    }
  });
});
