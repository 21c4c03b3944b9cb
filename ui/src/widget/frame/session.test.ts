import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { Chat } from "./chat.svelte";
import type { Command } from "../protocol";

// A server that answers the visitor routes, recording the session bodies.
function fakeServer() {
  const sessions: Record<string, unknown>[] = [];
  const byUser: Record<string, { visitor_id: string; token: string; conversation_id: string }> = {};
  let n = 0;
  const fresh = () => ({ visitor_id: `v${++n}`, token: `kf_${String(n).padStart(32, "0")}`, conversation_id: `c${n}` });
  const fetchImpl = vi.fn(async (url: string, init?: RequestInit) => {
    const path = new URL(url, "http://k").pathname;
    const json = (body: unknown, status = 200) => new Response(JSON.stringify(body), { status });
    if (path === "/api/v1/visitor/sessions") {
      const body = JSON.parse(String(init?.body)) as Record<string, string>;
      sessions.push(body);
      if (body.user_id) {
        byUser[body.user_id] ??= fresh();
        return json(byUser[body.user_id], 201);
      }
      const known = Object.values(byUser).find((s) => s.token === body.token);
      return json(known ?? (body.token ? { visitor_id: "anon", token: body.token, conversation_id: "c-anon" } : fresh()), 201);
    }
    if (path === "/api/v1/visitor/config") {
      return json({ app_name: "Shop", welcome_message: null, offline_message: null, open: true, agents_online: true, available: true });
    }
    if (path === "/api/v1/visitor/messages") return json({ messages: [] });
    if (path === "/api/v1/visitor/read") return json({ read: { read_seq: 0, seen_seq: 0 } });
    return json({ error: { code: "not_found", message: "nope" } }, 404);
  });
  return { sessions, fetchImpl };
}

class FakeSocket {
  readyState = 0;
  onopen: (() => void) | null = null;
  onclose: ((e: { code: number }) => void) | null = null;
  onmessage: unknown = null;
  onerror: unknown = null;
  send() {}
  close() {}
}

const init = (extra: Partial<Extract<Command, { type: "init" }>> = {}): Command => ({
  type: "init",
  page: { url: "https://shop.example/", title: "Shop" },
  locale: null,
  user: null,
  attributes: null,
  reset: false,
  open: false,
  token: null,
  ...extra,
});

describe("the visitor's session", () => {
  let server: ReturnType<typeof fakeServer>;
  let tokens: (string | null)[];
  let chat: Chat;

  beforeEach(() => {
    server = fakeServer();
    vi.stubGlobal("fetch", server.fetchImpl);
    vi.stubGlobal("WebSocket", FakeSocket);
    tokens = [];
    // No localStorage in this test: the page keeps the token (the fallback).
    chat = new Chat("ak_test", "en", undefined, undefined, (t) => tokens.push(t));
  });
  afterEach(() => {
    chat.dispose();
    vi.unstubAllGlobals();
  });

  it("resumes with the token the page kept, and starts ready", async () => {
    await chat.command(init({ token: "kf_00000000000000000000000000000099" }));
    expect(chat.phase).toBe("ready");
    expect(server.sessions[0]).toEqual({ app_key: "ak_test", token: "kf_00000000000000000000000000000099" });
  });

  it("starts as the user set before init, in one session call", async () => {
    await chat.command(init({ user: { user_id: "42", name: "Li" }, attributes: { plan: "pro" } }));
    expect(server.sessions).toHaveLength(1);
    expect(server.sessions[0]).toMatchObject({ app_key: "ak_test", user_id: "42", name: "Li", attributes: { plan: "pro" } });
  });

  it("a different user gets a fresh thread; the same token is kept for attributes", async () => {
    await chat.command(init());
    chat.add({
      id: "m1", conversation_id: "c1", seq: 1, client_msg_id: null, kind: "text",
      sender: { type: "visitor", id: "v1", name: "" }, content: "hi", meta: {}, attachment: null, created_at: 1,
    });
    expect(chat.messages).toHaveLength(1);
    await chat.command({ type: "setUser", user: { user_id: "7" } });
    expect(server.sessions[1]).toMatchObject({ user_id: "7", token: tokens[0] });
    expect(chat.messages).toHaveLength(0);
    await chat.command({ type: "setAttributes", attributes: { cart: 3 } });
    expect(server.sessions[2]).toEqual({ app_key: "ak_test", token: tokens[1], user_id: "7", attributes: { cart: 3 } });
  });

  it("skips a repeated setUser or setAttributes", async () => {
    await chat.command(init({ user: { user_id: "42" } }));
    await chat.command({ type: "setUser", user: { user_id: "42" } });
    await chat.command({ type: "setAttributes", attributes: { a: 1 } });
    await chat.command({ type: "setAttributes", attributes: { a: 1 } });
    expect(server.sessions).toHaveLength(2);
    await chat.command({ type: "setUser", user: { user_id: "42", name: "Li" } });
    expect(server.sessions).toHaveLength(3);
  });

  it("reset forgets the token and starts a new anonymous visitor", async () => {
    await chat.command(init());
    const first = tokens.at(-1);
    await chat.command({ type: "reset" });
    expect(server.sessions[1]).toEqual({ app_key: "ak_test" });
    expect(tokens.at(-1)).not.toBe(first);
  });

  it("shows the server's message when the chat cannot load", async () => {
    server.fetchImpl.mockImplementation(async () =>
      new Response(JSON.stringify({ error: { code: "not_found", message: "unknown app" } }), { status: 404 }),
    );
    await chat.command(init());
    expect(chat.phase).toBe("error");
    expect(chat.error).toContain("unknown app");
  });
});
