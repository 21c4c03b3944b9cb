// Every dictionary of every screen (workstation areas, the widget, the
// desktop shell, the shared event lines) has each key in both languages,
// no key in one language only, no empty string, and the same `{name}`
// placeholders in English and zh-CN. The type checker enforces the keys
// too (`defineDicts`); this test also covers the placeholders and keeps
// the promise if a dictionary is ever built outside `defineDicts`.
import { describe, expect, it } from "vitest";
import { defineDicts, missingKeys, placeholderMismatches, placeholders, translator, type Dicts } from "./i18n";
import { eventDicts } from "./events";
import { common } from "../agent/i18n/common";
import { chats } from "../agent/i18n/chats";
import { tickets } from "../agent/i18n/tickets";
import { settings } from "../agent/i18n/settings";
import { suggest } from "../agent/i18n/suggest";
import { lan } from "../agent/i18n/lan";
import { backup } from "../agent/i18n/backup";
import { updates } from "../agent/i18n/updates";
import { dicts as workstation } from "../agent/i18n";
import { dicts as widget } from "../widget/frame/i18n";
import { dicts as desktop } from "../desktop/strings";

const all: Record<string, Dicts> = {
  "workstation/common": common,
  "workstation/chats": chats,
  "workstation/tickets": tickets,
  "workstation/settings": settings,
  "workstation/suggest": suggest,
  "workstation/lan": lan,
  "workstation/backup": backup,
  "workstation/updates": updates,
  "workstation (merged)": workstation,
  "events": eventDicts,
  "widget": widget,
  "desktop": desktop,
};

function emptyStrings(dicts: Dicts): string[] {
  const out: string[] = [];
  for (const locale of ["en", "zh-CN"] as const) {
    for (const [key, value] of Object.entries(dicts[locale])) if (value.trim() === "") out.push(`${locale}:${key}`);
  }
  return out;
}

describe("dictionaries", () => {
  for (const [name, dicts] of Object.entries(all)) {
    it(`${name}: every key in both languages, none empty, same placeholders`, () => {
      expect(Object.keys(dicts.en).length, name).toBeGreaterThan(0);
      expect(missingKeys(dicts), name).toEqual([]);
      expect(emptyStrings(dicts), name).toEqual([]);
      expect(placeholderMismatches(dicts), name).toEqual([]);
    });
  }

  it("finds a key missing in one language, an extra one, and differing placeholders", () => {
    const broken: Dicts = {
      en: { a: "Hello {name}", b: "Bye", c: "{n} files" },
      "zh-CN": { a: "你好 {nmae}", c: "{n} 个文件", d: "多余" },
    };
    expect(missingKeys(broken)).toEqual(["zh-CN:b", "en:d"]);
    expect(placeholderMismatches(broken)).toEqual(["a: en {name} zh-CN {nmae}"]);
    expect(placeholders("{a} {b} {a} {x.y}")).toEqual(["a", "b"]);
  });

  it("types the keys: a misspelt key or a language out of step fails the type check", () => {
    // These lines are checked by `npm run check` (svelte-check runs tsc over
    // test files too): each @ts-expect-error must meet an error, or the check fails.
    const t = translator(workstation, "en");
    expect(t("nav.chats")).toBe("Chats");
    // @ts-expect-error a misspelt key
    expect(t("nav.chatz")).toBe("nav.chatz");
    // @ts-expect-error a key missing in zh-CN
    defineDicts({ en: { a: "A", b: "B" }, "zh-CN": { a: "甲" } });
    // @ts-expect-error a key only in zh-CN
    defineDicts({ en: { a: "A" }, "zh-CN": { a: "甲", b: "乙" } });
    const ok = defineDicts({ en: { a: "A" }, "zh-CN": { a: "甲" } });
    expect(translator(ok, "zh-CN")("a")).toBe("甲");
  });
});
