import { describe, expect, it } from "vitest";
import { firstLine, formatBytes, formatDuration, titleWithCount } from "./format";
import { backoffDelay, limitResume, MAX_RESUME } from "./live";
import { queryString } from "./api";

describe("format", () => {
  it("durations in both languages", () => {
    expect(formatDuration(5_400, "en")).toBe("5s");
    expect(formatDuration(125_000, "en")).toBe("2m");
    expect(formatDuration(3_900_000, "en")).toBe("1h 5m");
    expect(formatDuration(3_600_000 * 50, "en")).toBe("2d");
    expect(formatDuration(125_000, "zh-CN")).toBe("2 分钟");
    expect(formatDuration(-5, "en")).toBe("0s");
  });

  it("sizes, first lines and titles", () => {
    expect(formatBytes(512)).toBe("512 B");
    expect(formatBytes(2048)).toBe("2.0 KB");
    expect(formatBytes(5 * 1024 * 1024)).toBe("5.0 MB");
    expect(firstLine("  hello\nworld")).toBe("hello");
    expect(firstLine("退款退款退款", 4)).toBe("退款退…");
    expect(titleWithCount("Kefu", 0)).toBe("Kefu");
    expect(titleWithCount("Kefu", 3)).toBe("(3) Kefu");
    expect(titleWithCount("Kefu", 120)).toBe("(99+) Kefu");
  });
});

describe("live connection helpers", () => {
  it("backoff grows, is capped and jittered", () => {
    const lo = () => 0;
    const hi = () => 1;
    expect(backoffDelay(0, 500, 15_000, hi)).toBe(500);
    expect(backoffDelay(3, 500, 15_000, hi)).toBe(4000);
    expect(backoffDelay(30, 500, 15_000, hi)).toBe(15_000);
    expect(backoffDelay(30, 500, 15_000, lo)).toBe(250);
  });

  it("the resume map stays within the server's limit, most advanced first", () => {
    const big: Record<string, number> = {};
    for (let i = 0; i < MAX_RESUME + 10; i++) big[`c${i}`] = i;
    const limited = limitResume(big);
    expect(Object.keys(limited).length).toBe(MAX_RESUME);
    expect(limited.c0).toBeUndefined();
    expect(limited[`c${MAX_RESUME + 9}`]).toBe(MAX_RESUME + 9);
    expect(limitResume({ a: 1, b: -1, c: 1.5 })).toEqual({ a: 1 });
  });
});

describe("api", () => {
  it("builds query strings from defined values", () => {
    expect(queryString({ a: 1, b: undefined, c: null, d: "", e: ["x", "y"], f: [] })).toBe("?a=1&e=x%2Cy");
    expect(queryString(undefined)).toBe("");
  });
});
