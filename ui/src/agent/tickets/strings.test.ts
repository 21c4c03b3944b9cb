// The tickets and settings strings: both languages complete, each key in its
// area's namespace, and every literal key the screens use defined.
import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { missingKeys } from "../../lib/i18n";
import { dicts } from "../i18n";
import { tickets } from "../i18n/tickets";
import { settings } from "../i18n/settings";

function literalKeys(dir: string): string[] {
  const keys: string[] = [];
  for (const file of readdirSync(dir)) {
    if (!file.endsWith(".svelte") && !(file.endsWith(".ts") && !file.endsWith(".test.ts"))) continue;
    const text = readFileSync(join(dir, file), "utf8");
    for (const m of text.matchAll(/\bt\("([A-Za-z0-9_.]+)"/g)) keys.push(m[1]);
  }
  return keys;
}

describe("tickets and settings strings", () => {
  it("exist in both languages", () => {
    expect(missingKeys(tickets)).toEqual([]);
    expect(missingKeys(settings)).toEqual([]);
  });
  it("stay in their namespace", () => {
    expect(Object.keys(tickets.en).filter((k) => !k.startsWith("tickets."))).toEqual([]);
    expect(Object.keys(settings.en).filter((k) => !k.startsWith("settings."))).toEqual([]);
  });
  it("cover every literal key used by the screens", () => {
    const here = import.meta.dirname;
    const used = [...literalKeys(here), ...literalKeys(join(here, "../settings"))];
    expect(used.length).toBeGreaterThan(50);
    expect(used.filter((k) => !(k in dicts.en))).toEqual([]);
  });
  it("have no empty translations", () => {
    for (const d of [tickets, settings]) {
      for (const locale of ["en", "zh-CN"] as const) {
        expect(Object.entries(d[locale]).filter(([, v]) => !v.trim())).toEqual([]);
      }
    }
  });
});
