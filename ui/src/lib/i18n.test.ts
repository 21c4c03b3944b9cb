import { describe, expect, it } from "vitest";
import { detectLocale, interpolate, mergeDicts, missingKeys, translator, type Dicts } from "./i18n";
import { dicts } from "../agent/i18n";

describe("i18n", () => {
  it("follows the browser's languages", () => {
    expect(detectLocale(["zh-CN", "en"])).toBe("zh-CN");
    expect(detectLocale(["zh-TW"])).toBe("zh-CN");
    expect(detectLocale(["fr-FR", "en-GB"])).toBe("en");
    expect(detectLocale(["de"])).toBe("en");
    expect(detectLocale([])).toBe("en");
  });

  it("fills placeholders and leaves unknown ones", () => {
    expect(interpolate("{a} and {b}", { a: 1 })).toBe("1 and {b}");
  });

  it("falls back to English, then to the key", () => {
    // A partial dictionary (typed as plain strings) shows the fallbacks.
    const partial: Dicts = { en: { a: "A", b: "B" }, "zh-CN": { a: "甲" } };
    const t = translator(partial, "zh-CN");
    expect(t("a")).toBe("甲");
    expect(t("b")).toBe("B");
    expect(t("c")).toBe("c");
  });

  it("refuses a key defined twice", () => {
    expect(() => mergeDicts({ en: { a: "1" }, "zh-CN": {} }, { en: { a: "2" }, "zh-CN": {} })).toThrow(/twice/);
  });

  it("the workstation has every string in both languages", () => {
    expect(missingKeys(dicts)).toEqual([]);
    expect(Object.keys(dicts.en).length).toBeGreaterThan(30);
  });
});
