// The one WebSocket a screen keeps to the server (docs/API.md section 4).
//
// - Connects, says `hello` with the token and a resume map (conversation →
//   last seq held), so the server replays what was missed, catch-up first.
// - Reconnects after any close with exponential backoff and full jitter,
//   at once when the browser says it is back online; a server that stops
//   answering pings is treated as gone.
// - Sends messages through an outbox keyed by client_msg_id: a send made
//   while offline, or whose ack was lost with the connection, is sent again
//   after the next `welcome` with the same id, and the server dedupes it.
// - Close 4401 (bad token) and 4403 (origin refused) are final: no retry.
// - Close 4301 (the LAN host handed the shop over, API.md §2.24): says
//   where the shop went (`onMoved`) and reconnects at once; through a
//   peer's relay the same address reaches the new host.

import type { Message, ServerFrame } from "./types";
import { clientMsgId } from "./ids";

export type LiveState = "connecting" | "open" | "offline" | "stopped";

export interface SendInput {
  conversation_id?: string;
  content: string;
  meta?: Record<string, unknown>;
  private?: boolean;
  attachment_id?: string;
  client_msg_id?: string;
}

export class SendError extends Error {
  constructor(
    readonly code: string,
    message: string,
    /** With `rate_limited`: milliseconds until the server accepts the next message. */
    readonly retryAfterMs?: number,
  ) {
    super(message);
    this.name = "SendError";
  }
}

interface Pending {
  frame: Record<string, unknown>;
  resolve: (message: Message) => void;
  reject: (error: SendError) => void;
}

export interface LiveOptions {
  url: () => string;
  token: () => string | null;
  /** What the client holds: conversation id → highest seq it has. */
  resume: () => Record<string, number>;
  onFrame: (frame: ServerFrame) => void;
  /** After each `welcome`; `reconnected` is false only for the first. */
  onWelcome?: (welcome: Extract<ServerFrame, { type: "welcome" }>, reconnected: boolean) => void;
  onState?: (state: LiveState) => void;
  /** The server refused the token or the origin (close 4401/4403): no retry. */
  onRefused?: (code: number) => void;
  /** The shop moved to another LAN host (close 4301): where, from the reason. */
  onMoved?: (moved: Moved) => void;
  minDelayMs?: number;
  maxDelayMs?: number;
  pingEveryMs?: number;
  /** No frame at all for this long (pongs included) = the connection is dead. */
  deadAfterMs?: number;
  WebSocketImpl?: typeof WebSocket;
  random?: () => number;
}

/** Where the shop went, from a 4301 close's reason `moved DEVICE_ID [ADDRESS]`. */
export interface Moved {
  deviceId: string;
  address: string | null;
}

export const MOVED_CODE = 4301;

/** Parses a 4301 close reason; null when it is not one. */
export function parseMoved(reason: string): Moved | null {
  const parts = reason.trim().split(/\s+/);
  if (parts[0] !== "moved" || !parts[1] || parts.length > 3) return null;
  return { deviceId: parts[1], address: parts[2] ?? null };
}

/** The delay before reconnect attempt `attempt` (0-based): full jitter. */
export function backoffDelay(attempt: number, minMs: number, maxMs: number, random: () => number): number {
  const ceiling = Math.min(maxMs, minMs * 2 ** Math.min(attempt, 16));
  return Math.round(minMs / 2 + random() * (ceiling - minMs / 2));
}

export const MAX_RESUME = 1000;

export class Live {
  private ws: WebSocket | null = null;
  private state: LiveState = "stopped";
  private attempt = 0;
  private welcomed = false;
  private everWelcomed = false;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private pinger: ReturnType<typeof setInterval> | null = null;
  private lastFrameAt = 0;
  private readonly outbox = new Map<string, Pending>();
  private readonly onOnline = () => {
    if (this.state === "offline") this.connectNow();
  };

  constructor(private readonly opts: LiveOptions) {}

  get current(): LiveState {
    return this.state;
  }

  /** Sends still waiting for their ack. */
  get pending(): number {
    return this.outbox.size;
  }

  start() {
    if (this.state !== "stopped") return;
    if (typeof window !== "undefined") window.addEventListener("online", this.onOnline);
    this.connectNow();
  }

  stop() {
    this.setState("stopped");
    if (typeof window !== "undefined") window.removeEventListener("online", this.onOnline);
    this.clearTimers();
    const ws = this.ws;
    this.ws = null;
    ws?.close(1000);
    for (const pending of this.outbox.values()) pending.reject(new SendError("stopped", "connection stopped"));
    this.outbox.clear();
  }

  /** Drops the connection now and reconnects (after a detected gap, say). */
  reconnect() {
    if (this.state === "stopped") return;
    this.ws?.close(4000);
  }

  /** Sends a message; resolves with the stored message once it is acked. */
  sendMessage(input: SendInput): Promise<Message> {
    const id = input.client_msg_id ?? clientMsgId();
    const frame: Record<string, unknown> = {
      type: "send",
      client_msg_id: id,
      content: input.content,
      meta: input.meta ?? {},
    };
    if (input.conversation_id) frame.conversation_id = input.conversation_id;
    if (input.private) frame.private = true;
    if (input.attachment_id) frame.attachment_id = input.attachment_id;
    return new Promise((resolve, reject) => {
      const existing = this.outbox.get(id);
      if (existing) {
        // Same id sent twice: both callers get the one result.
        const prev = existing;
        this.outbox.set(id, {
          frame,
          resolve: (m) => (prev.resolve(m), resolve(m)),
          reject: (e) => (prev.reject(e), reject(e)),
        });
      } else {
        this.outbox.set(id, { frame, resolve, reject });
      }
      if (this.welcomed) this.raw(frame);
    });
  }

  typing(conversationId: string | undefined, on: boolean) {
    const frame: Record<string, unknown> = { type: "typing", on };
    if (conversationId) frame.conversation_id = conversationId;
    return this.raw(frame);
  }

  read(conversationId: string | undefined, seq: number) {
    const frame: Record<string, unknown> = { type: "read", seq };
    if (conversationId) frame.conversation_id = conversationId;
    return this.raw(frame);
  }

  /** Sends a frame if the connection is ready; false if it is not. */
  raw(frame: Record<string, unknown>): boolean {
    if (!this.ws || !this.welcomed || this.ws.readyState !== 1) return false;
    this.ws.send(JSON.stringify(frame));
    return true;
  }

  private setState(state: LiveState) {
    if (this.state === state) return;
    this.state = state;
    this.opts.onState?.(state);
  }

  private clearTimers() {
    if (this.timer) clearTimeout(this.timer);
    if (this.pinger) clearInterval(this.pinger);
    this.timer = null;
    this.pinger = null;
  }

  private connectNow() {
    this.clearTimers();
    const token = this.opts.token();
    if (!token) {
      this.setState("offline");
      return;
    }
    this.setState("connecting");
    this.welcomed = false;
    const Impl = this.opts.WebSocketImpl ?? WebSocket;
    let ws: WebSocket;
    try {
      ws = new Impl(this.opts.url());
    } catch {
      this.scheduleReconnect();
      return;
    }
    this.ws = ws;
    ws.onopen = () => {
      if (this.ws !== ws) return;
      const resume = limitResume(this.opts.resume());
      ws.send(JSON.stringify({ type: "hello", token, resume }));
      this.lastFrameAt = Date.now();
      const every = this.opts.pingEveryMs ?? 20_000;
      const deadAfter = this.opts.deadAfterMs ?? 45_000;
      this.pinger = setInterval(() => {
        if (this.ws !== ws) return;
        if (Date.now() - this.lastFrameAt > deadAfter) {
          ws.close(4000);
          this.onClosed(ws, 4000);
          return;
        }
        if (this.welcomed) ws.send('{"type":"ping"}');
      }, every);
    };
    ws.onmessage = (event) => {
      if (this.ws !== ws) return;
      this.lastFrameAt = Date.now();
      let frame: ServerFrame;
      try {
        frame = JSON.parse(String(event.data)) as ServerFrame;
      } catch {
        return;
      }
      this.handle(frame);
    };
    ws.onclose = (event) => this.onClosed(ws, event.code, event.reason);
    ws.onerror = () => {
      /* onclose follows */
    };
  }

  private handle(frame: ServerFrame) {
    switch (frame.type) {
      case "welcome": {
        const reconnected = this.everWelcomed;
        this.welcomed = true;
        this.everWelcomed = true;
        this.attempt = 0;
        this.setState("open");
        this.opts.onWelcome?.(frame, reconnected);
        // Everything not acked goes again, in the order it was sent.
        for (const pending of this.outbox.values()) this.raw(pending.frame);
        break;
      }
      case "ack": {
        const pending = this.outbox.get(frame.client_msg_id);
        this.outbox.delete(frame.client_msg_id);
        this.opts.onFrame(frame);
        pending?.resolve(frame.message);
        return;
      }
      case "error": {
        if (frame.client_msg_id) {
          const pending = this.outbox.get(frame.client_msg_id);
          this.outbox.delete(frame.client_msg_id);
          pending?.reject(new SendError(frame.code, frame.message, frame.retry_after_ms));
        }
        break;
      }
      case "pong":
        return;
    }
    this.opts.onFrame(frame);
  }

  private onClosed(ws: WebSocket, code: number, reason = "") {
    if (this.ws !== ws) return;
    this.ws = null;
    this.welcomed = false;
    this.clearTimers();
    if (this.state === "stopped") return;
    if (code === 4401 || code === 4403) {
      this.setState("offline");
      this.opts.onRefused?.(code);
      return;
    }
    if (code === MOVED_CODE) {
      const moved = parseMoved(reason);
      if (moved) this.opts.onMoved?.(moved);
      // The new host is up or about to be: try again soon, not after a long backoff.
      this.attempt = 0;
    }
    this.scheduleReconnect();
  }

  private scheduleReconnect() {
    this.setState("offline");
    const delay = backoffDelay(
      this.attempt++,
      this.opts.minDelayMs ?? 500,
      this.opts.maxDelayMs ?? 15_000,
      this.opts.random ?? Math.random,
    );
    this.timer = setTimeout(() => this.connectNow(), delay);
  }
}

/** At most MAX_RESUME entries (the server's limit), the most advanced first. */
export function limitResume(resume: Record<string, number>): Record<string, number> {
  const entries = Object.entries(resume).filter(([, seq]) => Number.isSafeInteger(seq) && seq >= 0);
  if (entries.length <= MAX_RESUME) return Object.fromEntries(entries);
  entries.sort((a, b) => b[1] - a[1]);
  return Object.fromEntries(entries.slice(0, MAX_RESUME));
}
