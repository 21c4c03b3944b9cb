import { describe, expect, it } from "vitest";
import { linkify, safeHref } from "./linkify";

describe("linkify", () => {
  it("links http(s), www and email, keeping the rest as text", () => {
    const segs = linkify("see https://shop.example/a?b=1, or www.tea.cn. Mail li@example.com!");
    expect(segs).toEqual([
      { kind: "text", text: "see " },
      { kind: "link", text: "https://shop.example/a?b=1", href: "https://shop.example/a?b=1" },
      { kind: "text", text: ", or " },
      { kind: "link", text: "www.tea.cn", href: "https://www.tea.cn/" },
      { kind: "text", text: ". Mail " },
      { kind: "link", text: "li@example.com", href: "mailto:li@example.com" },
      { kind: "text", text: "!" },
    ]);
  });

  it("stops a link at Chinese punctuation", () => {
    const segs = linkify("订单见 https://shop.example/o/1。谢谢");
    expect(segs[1]).toEqual({ kind: "link", text: "https://shop.example/o/1", href: "https://shop.example/o/1" });
    expect(segs[2]).toEqual({ kind: "text", text: "。谢谢" });
  });

  it("never links dangerous schemes", () => {
    for (const bad of ["javascript:alert(1)", "JaVaScRiPt:alert(1)", "data:text/html,<script>", "vbscript:x", "file:///etc/passwd"]) {
      expect(safeHref(bad)).toBeNull();
      expect(linkify(bad).every((s) => s.kind === "text")).toBe(true);
    }
    // Markup stays text: the renderer never parses it.
    const segs = linkify('<a href="javascript:alert(1)">x</a> <img src=x onerror=alert(1)>');
    expect(segs.filter((s) => s.kind === "link")).toEqual([]);
  });

  it("keeps all text: joining segments gives the input back", () => {
    const text = "a https://x.example/(b) c www.y.example, d e@f.example";
    expect(linkify(text).map((s) => s.text).join("")).toBe(text);
  });
});
