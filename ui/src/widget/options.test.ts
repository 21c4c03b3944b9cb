import { describe, expect, it } from "vitest";
import { hostFromSrc, normalizeColor, normalizeLocale, parseOptions } from "./options";
import { frameUrl, parseFragment } from "./fragment";

const attrs = (map: Record<string, string>) => (name: string) => map[name] ?? null;
const KEY = "ak_0123456789abcdef01234567";

describe("loader options", () => {
  it("reads the data-attributes and the host from the script src", () => {
    const o = parseOptions(
      attrs({ "app-key": KEY, locale: "zh-TW", position: "left", color: "#FF0000" }),
      "http://10.0.0.5:5338/widget.js",
      null,
    );
    expect(o).toEqual({ appKey: KEY, host: "http://10.0.0.5:5338", locale: "zh-CN", position: "left", color: "#ff0000" });
  });

  it("defaults: right, no locale, no color", () => {
    const o = parseOptions(attrs({ "app-key": KEY }), "https://kefu.example/widget.js", undefined);
    expect(o).toMatchObject({ position: "right", locale: null, color: null });
  });

  it("resolves a relative src against the page", () => {
    expect(parseOptions(attrs({ "app-key": KEY }), "/widget.js", null, "https://s.example/p")?.host).toBe(
      "https://s.example",
    );
  });

  it("refuses a missing or malformed app key, or a non-http src", () => {
    expect(parseOptions(attrs({}), "https://k.example/widget.js", null)).toBeNull();
    expect(parseOptions(attrs({ "app-key": "ak_x&y=1" }), "https://k.example/widget.js", null)).toBeNull();
    expect(parseOptions(attrs({ "app-key": KEY }), "data:text/javascript,1", null)).toBeNull();
    expect(parseOptions(attrs({ "app-key": KEY }), null, null)).toBeNull();
  });

  it("lets valid kefuSettings win and ignores invalid ones", () => {
    const o = parseOptions(attrs({ "app-key": KEY, locale: "en", color: "#000" }), "https://k.example/w.js", {
      locale: "zh",
      color: "red; background: url(x)",
      position: "left",
    });
    expect(o).toMatchObject({ locale: "zh-CN", color: "#000", position: "left" });
  });

  it("normalizes locale and color strictly", () => {
    expect(normalizeLocale("en-GB")).toBe("en");
    expect(normalizeLocale("fr")).toBeNull();
    expect(normalizeLocale(3)).toBeNull();
    expect(normalizeColor("#abc")).toBe("#abc");
    expect(normalizeColor("#abcd")).toBeNull();
    expect(normalizeColor("blue")).toBeNull();
    expect(hostFromSrc("javascript:alert(1)")).toBeNull();
  });
});

describe("frame fragment", () => {
  it("round-trips; only the public app key is in the query (for frame-ancestors)", () => {
    const url = frameUrl("http://k:5338", { appKey: KEY, origin: "https://shop.example", locale: "zh-CN", color: "#123456" });
    expect(new URL(url).search).toBe(`?app_key=${KEY}`);
    expect(new URL(url).pathname).toBe("/widget/frame.html");
    expect(parseFragment(new URL(url).hash)).toEqual({
      appKey: KEY,
      origin: "https://shop.example",
      locale: "zh-CN",
      color: "#123456",
    });
  });

  it("does not trust a bad origin, locale or color", () => {
    const p = parseFragment("#app_key=ak_1&origin=https://shop.example/path&locale=xx&color=url(x)");
    expect(p).toEqual({ appKey: "ak_1", origin: null, locale: null, color: null });
    expect(parseFragment("#origin=javascript:1").origin).toBeNull();
  });
});
