// Live against a real WebSocket server (the `ws` package) speaking a tiny
// part of Kefu's protocol: hello → welcome, send → ack. The test kills
// connections the way a network does and checks what the client does next.
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { WebSocketServer, WebSocket as NodeWebSocket } from "ws";
import type { AddressInfo } from "node:net";
import { Live, parseMoved, type LiveState, type Moved } from "./live";
import type { Message, ServerFrame } from "./types";

interface Received {
  connection: number;
  frame: Record<string, unknown>;
}

class FakeKefu {
  readonly wss: WebSocketServer;
  readonly received: Received[] = [];
  readonly hellos: Record<string, unknown>[] = [];
  /** When false, sends are swallowed (the ack is "lost"). */
  ack = true;
  /** When false, pings get no pong (a dead server). */
  pong = true;
  sockets: NodeWebSocket[] = [];
  private seq = 0;
  private readonly stored = new Map<string, Message>();

  constructor(port = 0) {
    this.wss = new WebSocketServer({ host: "127.0.0.1", port });
    this.wss.on("connection", (ws) => {
      const connection = this.sockets.length;
      this.sockets.push(ws);
      ws.on("message", (data) => {
        const frame = JSON.parse(String(data)) as Record<string, unknown>;
        this.received.push({ connection, frame });
        if (frame.type === "hello") {
          if (frame.token !== "good") return ws.close(4401);
          this.hellos.push(frame);
          ws.send(JSON.stringify({ type: "welcome", role: "agent", id: "a1" }));
        } else if (frame.type === "send" && this.ack) {
          const id = String(frame.client_msg_id);
          // Dedupe by client_msg_id, as the server does.
          let message = this.stored.get(id);
          if (!message) {
            message = {
              id: `m${++this.seq}`,
              conversation_id: String(frame.conversation_id),
              seq: this.seq,
              client_msg_id: id,
              kind: "text",
              sender: { type: "agent", id: "a1", name: "A" },
              content: String(frame.content),
              meta: {},
              attachment: null,
              created_at: Date.now(),
            };
            this.stored.set(id, message);
          }
          ws.send(JSON.stringify({ type: "ack", client_msg_id: id, message }));
        } else if (frame.type === "ping" && this.pong) {
          ws.send('{"type":"pong"}');
        }
      });
    });
  }

  get url(): string {
    return `ws://127.0.0.1:${(this.wss.address() as AddressInfo).port}/api/v1/ws`;
  }

  /** Drops every connection without a close frame, like a lost network. */
  killAll() {
    for (const ws of this.sockets) if (ws.readyState === NodeWebSocket.OPEN) ws.terminate();
  }

  sends(connection?: number): Record<string, unknown>[] {
    return this.received
      .filter((r) => r.frame.type === "send" && (connection === undefined || r.connection === connection))
      .map((r) => r.frame);
  }

  close(): Promise<void> {
    for (const ws of this.sockets) ws.terminate();
    return new Promise((resolve) => this.wss.close(() => resolve()));
  }
}

async function until(cond: () => boolean, ms = 3000): Promise<void> {
  const start = Date.now();
  while (!cond()) {
    if (Date.now() - start > ms) throw new Error("timed out waiting");
    await new Promise((r) => setTimeout(r, 5));
  }
}

describe("Live against a real WebSocket server", () => {
  let server: FakeKefu;
  let live: Live;
  let welcomes: boolean[];
  let frames: ServerFrame[];
  let states: LiveState[];
  let held: Record<string, number>;
  let token: string;

  function start(extra: Partial<ConstructorParameters<typeof Live>[0]> = {}) {
    live = new Live({
      url: () => server.url,
      token: () => token,
      resume: () => ({ ...held }),
      onFrame: (f) => frames.push(f),
      onWelcome: (_w, reconnected) => welcomes.push(reconnected),
      onState: (s) => states.push(s),
      minDelayMs: 10,
      maxDelayMs: 40,
      WebSocketImpl: NodeWebSocket as unknown as typeof WebSocket,
      ...extra,
    });
    live.start();
  }

  beforeEach(() => {
    server = new FakeKefu();
    welcomes = [];
    frames = [];
    states = [];
    held = { conv1: 4 };
    token = "good";
  });

  afterEach(async () => {
    live?.stop();
    await server.close();
  });

  it("says hello with the resume map and sends messages acked by the server", async () => {
    start();
    await until(() => welcomes.length === 1);
    expect(welcomes).toEqual([false]);
    expect(server.hellos[0]).toMatchObject({ token: "good", resume: { conv1: 4 } });
    const message = await live.sendMessage({ conversation_id: "conv1", content: "hi" });
    expect(message.content).toBe("hi");
    expect(live.pending).toBe(0);
    expect(frames.some((f) => f.type === "ack")).toBe(true);
  });

  it("reconnects after the connection is killed and resumes from what the client holds then", async () => {
    start();
    await until(() => welcomes.length === 1);
    held = { conv1: 9, conv2: 2 };
    server.killAll();
    await until(() => welcomes.length === 2);
    expect(welcomes).toEqual([false, true]);
    expect(states).toContain("offline");
    expect(live.current).toBe("open");
    expect(server.hellos[1].resume).toEqual({ conv1: 9, conv2: 2 });
    // And again: every drop is followed by a new hello.
    server.killAll();
    await until(() => welcomes.length === 3);
    expect(server.hellos).toHaveLength(3);
  });

  it("resends an unacked send after reconnect with the same client_msg_id, exactly once", async () => {
    start();
    await until(() => welcomes.length === 1);
    server.ack = false;
    let resolved = 0;
    const sent = live.sendMessage({ conversation_id: "conv1", content: "lost ack" }).then((m) => {
      resolved++;
      return m;
    });
    await until(() => server.sends(0).length === 1);
    const id = server.sends(0)[0].client_msg_id;
    expect(live.pending).toBe(1);

    server.ack = true;
    server.killAll();
    const message = await sent;
    expect(message.client_msg_id).toBe(id);
    expect(server.sends(1)).toHaveLength(1);
    expect(server.sends(1)[0].client_msg_id).toBe(id);
    expect(server.sends(1)[0].content).toBe("lost ack");
    expect(live.pending).toBe(0);

    // Nothing more goes out after the ack, even across another reconnect.
    server.killAll();
    await until(() => welcomes.length === 3);
    await new Promise((r) => setTimeout(r, 50));
    expect(server.sends().filter((f) => f.client_msg_id === id)).toHaveLength(2);
    expect(server.sends(2)).toHaveLength(0);
    expect(resolved).toBe(1);
  });

  it("queues a send made while offline and sends it once the server welcomes", async () => {
    start();
    await until(() => welcomes.length === 1);
    // Close the server's side and refuse new connections for a moment.
    const port = (server.wss.address() as AddressInfo).port;
    await server.close();
    await until(() => live.current !== "open");
    const sent = live.sendMessage({ conversation_id: "conv1", content: "typed offline" });
    expect(live.pending).toBe(1);
    await new Promise((r) => setTimeout(r, 60));
    expect(server.sends()).toHaveLength(0);
    server = new FakeKefu(port);
    const message = await sent;
    expect(message.content).toBe("typed offline");
    expect(server.sends()).toHaveLength(1);
  });

  it("treats a server that stops answering pings as gone and reconnects", async () => {
    start({ pingEveryMs: 20, deadAfterMs: 80 });
    await until(() => welcomes.length === 1);
    server.pong = false;
    await until(() => welcomes.length === 2, 2000);
    expect(welcomes).toEqual([false, true]);
  });

  it("stops for good when the token is refused (4401)", async () => {
    token = "bad";
    let refused = 0;
    start({ onRefused: () => refused++ });
    await until(() => refused === 1);
    await new Promise((r) => setTimeout(r, 80));
    expect(server.sockets).toHaveLength(1);
    expect(live.current).toBe("offline");
  });

  it("on 4301 says where the shop moved, reconnects at once and resends what was not acked", async () => {
    const moves: Moved[] = [];
    start({ onMoved: (m) => moves.push(m), minDelayMs: 10, maxDelayMs: 10_000 });
    await until(() => welcomes.length === 1);
    server.ack = false;
    const sent = live.sendMessage({ conversation_id: "conv1", content: "during the handover" });
    await until(() => server.sends(0).length === 1);
    // The old host closes every connection naming its successor.
    server.ack = true;
    server.sockets[0].close(4301, "moved GAVWHOZ3-AAAA-BBBB 192.168.1.21:5339");
    await until(() => welcomes.length === 2);
    expect(moves).toEqual([{ deviceId: "GAVWHOZ3-AAAA-BBBB", address: "192.168.1.21:5339" }]);
    const message = await sent;
    expect(message.content).toBe("during the handover");
    expect(server.sends(1).map((f) => f.client_msg_id)).toEqual([message.client_msg_id]);
  });
});

describe("4301 close reasons", () => {
  it("reads the device and the address, or the device alone", () => {
    expect(parseMoved("moved GAVW-HOZ3-X 10.0.0.2:5339")).toEqual({ deviceId: "GAVW-HOZ3-X", address: "10.0.0.2:5339" });
    expect(parseMoved("moved GAVW-HOZ3-X")).toEqual({ deviceId: "GAVW-HOZ3-X", address: null });
  });
  it("refuses anything else", () => {
    expect(parseMoved("")).toBeNull();
    expect(parseMoved("moved")).toBeNull();
    expect(parseMoved("going away")).toBeNull();
    expect(parseMoved("moved a b c")).toBeNull();
  });
});

