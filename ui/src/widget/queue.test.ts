import { describe, expect, it, vi } from "vitest";
import { CommandQueue, foldInit } from "./queue";
import type { Command } from "./protocol";
import { Emitter } from "./emitter";
import { launcherLabel } from "./label";

const page = { url: "https://shop.example/", title: "Shop" };

describe("command queue before the frame is ready", () => {
  it("holds commands and sends one folded init on flush, then passes through", () => {
    const q = new CommandQueue();
    q.push({ type: "setUser", user: { user_id: "1" } });
    q.push({ type: "setAttributes", attributes: { a: 1 } });
    q.push({ type: "setAttributes", attributes: { b: 2 } });
    q.push({ type: "visibility", open: true });
    expect(q.length).toBe(4);
    const sent: Command[] = [];
    q.flush((c) => sent.push(c), page, false);
    expect(sent).toEqual([
      {
        type: "init",
        page,
        locale: null,
        user: { user_id: "1" },
        attributes: { a: 1, b: 2 },
        reset: false,
        open: true,
        token: null,
      },
    ]);
    q.push({ type: "reset" });
    expect(sent[1]).toEqual({ type: "reset" });
    expect(q.length).toBe(0);
  });

  it("queues again after pause", () => {
    const q = new CommandQueue();
    const send = vi.fn();
    q.flush(send, page, false);
    q.pause();
    q.push({ type: "setLocale", locale: "en" });
    expect(send).toHaveBeenCalledTimes(1);
    expect(q.length).toBe(1);
  });

  it("reset before init forgets the user queued before it, not after", () => {
    const [init] = foldInit(
      [
        { type: "setUser", user: { user_id: "1" } },
        { type: "reset" },
        { type: "setLocale", locale: "zh-CN" },
      ],
      page,
      false,
    );
    expect(init).toMatchObject({ user: null, reset: true, locale: "zh-CN" });
    const [again] = foldInit([{ type: "reset" }, { type: "setUser", user: { user_id: "2" } }], page, false);
    expect(again).toMatchObject({ user: { user_id: "2" }, reset: true });
    const [withToken] = foldInit([], page, false, "kf_00");
    expect(withToken).toMatchObject({ token: "kf_00" });
    const [forgotten] = foldInit([{ type: "reset" }], page, false, "kf_00");
    expect(forgotten).toMatchObject({ token: null, reset: true });
  });
});

describe("Kefu.on", () => {
  it("returns an unsubscribe and survives a throwing listener", () => {
    const e = new Emitter();
    const seen: number[] = [];
    const err = vi.spyOn(console, "error").mockImplementation(() => {});
    e.on("unread", () => {
      throw new Error("page bug");
    });
    const off = e.on("unread", (n) => seen.push(n));
    e.emit("unread", 1);
    off();
    e.emit("unread", 2);
    expect(seen).toEqual([1]);
    expect(err).toHaveBeenCalled();
    // Unknown event names are ignored.
    expect(typeof e.on("nope" as "open", () => {})).toBe("function");
  });
});

describe("launcher label", () => {
  it("names the action and the unread count in both languages", () => {
    expect(launcherLabel("en", false, 0)).toBe("Open chat");
    expect(launcherLabel("en", false, 3)).toBe("Open chat (3 unread)");
    expect(launcherLabel("en", true, 3)).toBe("Close chat");
    expect(launcherLabel("zh-CN", false, 2)).toBe("打开在线客服（2 条未读）");
  });
});
