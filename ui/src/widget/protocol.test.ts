import { describe, expect, it } from "vitest";
import { acceptFromFrame, acceptFromParent, parseCommand, parseEvent, wrap, LIMITS } from "./protocol";

const parent = { name: "parent" };
const frame = { name: "frame" };
const other = { name: "other" };
const SHOP = "https://shop.example";
const HOST = "http://127.0.0.1:5338";

describe("page → frame commands", () => {
  const cmd = (body: Record<string, unknown>) => ({ source: "kefu", v: 1, ...body });

  it("accepts a command from the parent window at the named origin", () => {
    const e = { source: parent, origin: SHOP, data: cmd({ type: "visibility", open: true }) };
    expect(acceptFromParent(e, parent, SHOP)).toEqual({ type: "visibility", open: true });
  });

  it("rejects the wrong window, the wrong origin, or no known origin", () => {
    const data = cmd({ type: "reset" });
    expect(acceptFromParent({ source: other, origin: SHOP, data }, parent, SHOP)).toBeNull();
    expect(acceptFromParent({ source: parent, origin: "https://evil.example", data }, parent, SHOP)).toBeNull();
    expect(acceptFromParent({ source: parent, origin: SHOP, data }, parent, null)).toBeNull();
  });

  it("rejects a wrong envelope", () => {
    for (const data of [
      null,
      "reset",
      [],
      { type: "reset" },
      { source: "other", v: 1, type: "reset" },
      { source: "kefu", v: 2, type: "reset" },
      { source: "kefu", v: 1, type: 5 },
      { source: "kefu", v: 1, type: "nope" },
      { source: "kefu", v: 1, type: "loaded" },
    ]) {
      expect(parseCommand(data)).toBeNull();
    }
  });

  it("validates setUser", () => {
    expect(parseCommand(cmd({ type: "setUser", user: { user_id: "42", name: "Li", user_hash: "ab12" } }))).toEqual({
      type: "setUser",
      user: { user_id: "42", name: "Li", user_hash: "ab12" },
    });
    const bad = [
      { user_id: "" },
      { user_id: 42 },
      { user_id: "x".repeat(LIMITS.userId + 1) },
      { user_id: "1", name: 5 },
      { user_id: "1", email: "x".repeat(LIMITS.email + 1) },
      { user_id: "1", user_hash: "<script>" },
      null,
    ];
    for (const user of bad) expect(parseCommand(cmd({ type: "setUser", user }))).toBeNull();
  });

  it("drops unknown fields instead of passing them on", () => {
    const c = parseCommand(cmd({ type: "setUser", user: { user_id: "1", admin: true }, extra: 1 }));
    expect(c).toEqual({ type: "setUser", user: { user_id: "1" } });
  });

  it("validates setAttributes: a JSON object within the size limit", () => {
    expect(parseCommand(cmd({ type: "setAttributes", attributes: { plan: "pro" } }))).not.toBeNull();
    expect(parseCommand(cmd({ type: "setAttributes", attributes: [1] }))).toBeNull();
    expect(parseCommand(cmd({ type: "setAttributes", attributes: "x" }))).toBeNull();
    expect(parseCommand(cmd({ type: "setAttributes", attributes: { big: "x".repeat(5000) } }))).toBeNull();
  });

  it("validates setLocale, page and visibility", () => {
    expect(parseCommand(cmd({ type: "setLocale", locale: "zh-CN" }))).toEqual({ type: "setLocale", locale: "zh-CN" });
    expect(parseCommand(cmd({ type: "setLocale", locale: "fr" }))).toBeNull();
    expect(parseCommand(cmd({ type: "page", page: { url: "https://a.b/c", title: "C" } }))).not.toBeNull();
    expect(parseCommand(cmd({ type: "page", page: { url: "javascript:alert(1)", title: "" } }))).toBeNull();
    expect(parseCommand(cmd({ type: "page", page: { url: "https://a.b", title: 1 } }))).toBeNull();
    expect(parseCommand(cmd({ type: "visibility", open: "yes" }))).toBeNull();
  });

  it("validates init as a whole", () => {
    const good = {
      type: "init",
      page: { url: "https://a.b/", title: "Shop" },
      locale: null,
      user: null,
      attributes: null,
      reset: false,
      open: false,
      token: null,
    };
    expect(parseCommand(cmd(good))).toEqual(good);
    expect(parseCommand(cmd({ ...good, token: "kf_0123456789abcdef0123456789abcdef" }))).not.toBeNull();
    expect(parseCommand(cmd({ ...good, token: "kf_<x>" }))).toBeNull();
    expect(parseCommand(cmd({ ...good, user: { user_id: "" } }))).toBeNull();
    expect(parseCommand(cmd({ ...good, locale: "de" }))).toBeNull();
    expect(parseCommand(cmd({ ...good, reset: undefined }))).toBeNull();
  });
});

describe("frame → page events", () => {
  const message = {
    seq: 3,
    kind: "text",
    sender: { type: "agent", name: "Amy", id: "secret-id" },
    content: "hi",
    created_at: 1,
    meta: { page_url: "x" },
  };

  it("accepts only from our iframe's window and the host origin", () => {
    const data = wrap({ type: "unread" as const, count: 2 });
    expect(acceptFromFrame({ source: frame, origin: HOST, data }, frame, HOST)).toEqual({ type: "unread", count: 2 });
    expect(acceptFromFrame({ source: other, origin: HOST, data }, frame, HOST)).toBeNull();
    expect(acceptFromFrame({ source: frame, origin: SHOP, data }, frame, HOST)).toBeNull();
    expect(acceptFromFrame({ source: null, origin: HOST, data }, null, HOST)).toBeNull();
  });

  it("passes on only the fields a page needs", () => {
    const e = parseEvent(wrap({ type: "message", message }));
    expect(e).toEqual({
      type: "message",
      message: { seq: 3, kind: "text", sender: { type: "agent", name: "Amy" }, content: "hi", created_at: 1 },
    });
  });

  it("rejects bad events", () => {
    expect(parseEvent(wrap({ type: "unread", count: -1 }))).toBeNull();
    expect(parseEvent(wrap({ type: "unread", count: 1.5 }))).toBeNull();
    expect(parseEvent(wrap({ type: "message", message: { ...message, seq: "3" } }))).toBeNull();
    expect(parseEvent(wrap({ type: "message", message: { ...message, sender: { type: "visitor", name: "" } } }))).toBeNull();
    expect(parseEvent(wrap({ type: "message", message: { ...message, kind: "note" } }))).toBeNull();
    expect(parseEvent(wrap({ type: "setUser" }))).toBeNull();
    expect(parseEvent(wrap({ type: "session", token: 5 }))).toBeNull();
    expect(parseEvent(wrap({ type: "session", token: "x" }))).toBeNull();
    expect(parseEvent(wrap({ type: "session", token: null }))).toEqual({ type: "session", token: null });
  });
});
