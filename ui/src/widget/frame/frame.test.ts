import { describe, expect, it } from "vitest";
import type { Message } from "../../lib/types";
import { attachmentHref, buildMeta, contrastText, seenAt, showSender, toPageMessage, unreadCount } from "./meta";
import { dicts, table } from "./i18n";
import { trustedParentOrigin } from "./bridge";
import { storageKey } from "./storage";
import { translator } from "../../lib/i18n";

let n = 0;
function msg(seq: number, type: "visitor" | "agent" | "system", extra: Partial<Message> = {}): Message {
  return {
    id: `m${++n}`,
    conversation_id: "c1",
    seq,
    client_msg_id: null,
    kind: "text",
    sender: { type, id: type === "agent" ? "a1" : type === "system" ? "system" : "v1", name: type === "agent" ? "Amy" : "" },
    content: `m${seq}`,
    meta: {},
    attachment: null,
    created_at: seq * 1000,
    ...extra,
  };
}

describe("message meta", () => {
  it("carries page, title, user agent and locale", () => {
    expect(buildMeta({ url: "https://shop.example/p/1", title: "Shoes" }, "zh-CN", "UA/1")).toEqual({
      page_url: "https://shop.example/p/1",
      page_title: "Shoes",
      user_agent: "UA/1",
      locale: "zh-CN",
    });
  });

  it("leaves out what is unknown and never a non-http URL", () => {
    expect(buildMeta(null, "en", "")).toEqual({ locale: "en" });
    expect(buildMeta({ url: "javascript:alert(1)", title: "" }, "en", "")).toEqual({ locale: "en" });
  });

  it("stays within the server's 4 KiB meta limit", () => {
    const meta = buildMeta({ url: "https://a.b/" + "x".repeat(9000), title: "t".repeat(9000) }, "en", "u".repeat(9000));
    expect(new TextEncoder().encode(JSON.stringify(meta)).length).toBeLessThan(4096);
  });
});

describe("what the page learns of a message", () => {
  it("agent and system messages only, without ids or meta", () => {
    const m = msg(3, "agent", { meta: { secret: 1 } });
    expect(toPageMessage(m)).toEqual({
      seq: 3,
      kind: "text",
      sender: { type: "agent", name: "Amy" },
      content: "m3",
      created_at: 3000,
    });
    expect(toPageMessage(msg(4, "visitor"))).toBeNull();
    expect(toPageMessage(msg(5, "system", { kind: "event" }))).toBeNull();
  });
});

describe("unread and seen", () => {
  const list = [msg(1, "visitor"), msg(2, "agent"), msg(4, "agent"), msg(5, "system", { kind: "event" }), msg(6, "visitor")];

  it("counts agents' messages after the read marker", () => {
    expect(unreadCount(list, 0)).toBe(2);
    expect(unreadCount(list, 2)).toBe(1);
    expect(unreadCount(list, 6)).toBe(0);
    expect(unreadCount([], 0)).toBe(0);
  });

  it("caps at 100 as the server does", () => {
    const many = Array.from({ length: 150 }, (_, i) => msg(i + 1, "agent"));
    expect(unreadCount(many, 0)).toBe(100);
  });

  it("puts Seen under the visitor's last message once an agent read it", () => {
    expect(seenAt(list, 5)).toBeNull();
    expect(seenAt(list, 6)).toBe(6);
    expect(seenAt(list.slice(0, 3), 1)).toBe(1);
    expect(seenAt([msg(1, "agent")], 9)).toBeNull();
  });

  it("names the sender when it changes", () => {
    expect(showSender(undefined, list[1])).toBe(true);
    expect(showSender(list[1], list[2])).toBe(false);
    expect(showSender(list[0], list[0])).toBe(false);
    expect(showSender(list[3], msg(7, "agent"))).toBe(true);
  });
});

describe("attachments", () => {
  it("only the server's attachment paths, inline only on request", () => {
    const url = "/api/v1/attachments/01J9ZA0000000000000000000A/3f1c0000000000000000000000000000";
    expect(attachmentHref(url)).toBe(url);
    expect(attachmentHref(url, true)).toBe(`${url}?inline=1`);
    expect(attachmentHref("javascript:alert(1)")).toBeNull();
    expect(attachmentHref("https://evil.example/x.png")).toBeNull();
    expect(attachmentHref("/api/v1/attachments/../../x")).toBeNull();
  });
});

describe("the widget's i18n", () => {
  it("has every key in both languages, non-empty", () => {
    expect(Object.keys(dicts.en).sort()).toEqual(Object.keys(dicts["zh-CN"]).sort());
    for (const [key, [en, zh]] of Object.entries(table)) {
      expect(en.trim(), key).not.toBe("");
      expect(zh.trim(), key).not.toBe("");
    }
  });

  it("uses the same placeholders in both languages", () => {
    const names = (s: string) => [...s.matchAll(/\{(\w+)\}/g)].map((m) => m[1]).sort();
    for (const [key, [en, zh]] of Object.entries(table)) expect(names(zh), key).toEqual(names(en));
  });

  it("translates with parameters", () => {
    expect(translator(dicts, "zh-CN")("typing", { name: "Amy" })).toBe("Amy 正在输入…");
    expect(translator(dicts, "en")("typing", { name: "Amy" })).toBe("Amy is typing…");
  });
});

describe("frame helpers", () => {
  it("trusts the named parent origin only if the browser agrees", () => {
    expect(trustedParentOrigin("https://shop.example", undefined)).toBe("https://shop.example");
    expect(trustedParentOrigin("https://shop.example", ["https://shop.example"])).toBe("https://shop.example");
    expect(trustedParentOrigin("https://shop.example", ["https://evil.example"])).toBeNull();
    expect(trustedParentOrigin(null, [])).toBeNull();
  });

  it("keeps one token per app", () => {
    expect(storageKey("ak_1")).not.toBe(storageKey("ak_2"));
  });

  it("picks readable text on the shop's color", () => {
    expect(contrastText("#ffffff")).toBe("#111111");
    expect(contrastText("#ff0")).toBe("#111111");
    expect(contrastText("#2563eb")).toBe("#ffffff");
    expect(contrastText("#000")).toBe("#ffffff");
  });
});
