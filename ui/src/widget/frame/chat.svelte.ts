// The visitor's chat, as state the frame's components read: who the visitor
// is (a session kept across reloads by its token), the thread (REST history,
// then the Live WebSocket resuming from the last seq), messages on their way
// (shown at once, settled by their ack, retried on failure), typing, read and
// "seen" markers, and the shop's config. Commands from the page are run one
// at a time, in order, because each may change who the visitor is.

import { Api, ApiError } from "../../lib/api";
import { Live, SendError, type LiveState } from "../../lib/live";
import { insertMessage, lastSeq, mergeMessages } from "../../lib/thread";
import { clientMsgId } from "../../lib/ids";
import { translator, type Locale } from "../../lib/i18n";
import type { Attachment, Message, ServerFrame } from "../../lib/types";
import type { Command, PageInfo, PageMessage, UserInfo } from "../protocol";
import { buildMeta, toPageMessage, unreadCount } from "./meta";
import { loadToken, ownStorage, saveToken } from "./storage";
import { dicts } from "./i18n";

export interface VisitorConfig {
  app_name: string;
  welcome_message: string | null;
  offline_message: string | null;
  open: boolean;
  agents_online: boolean;
  available: boolean;
}

export interface VisitorTicket {
  number: number;
  subject: string;
  description: string | null;
  status: "open" | "pending" | "solved" | "closed";
  created_at: number;
  updated_at: number;
}

/** A visitor message not stored yet (or a file still uploading). */
export interface Outgoing {
  client_msg_id: string;
  content: string;
  created_at: number;
  file?: File;
  fileName?: string;
  attachment_id?: string;
  uploading?: boolean;
  failed?: string;
  /** Extra meta for this message (a pick from the bot's choices). */
  meta?: Record<string, unknown>;
}

interface SessionAnswer {
  visitor_id: string;
  token: string;
  conversation_id: string;
}
type StoredSession = SessionAnswer;

const PAGE = 200;
const TYPING_SHOWN_MS = 8000;
const TYPING_IDLE_MS = 4000;
const TYPING_REPEAT_MS = 2000;

export class Chat {
  messages = $state.raw<readonly Message[]>([]);
  outgoing = $state.raw<readonly Outgoing[]>([]);
  config = $state.raw<VisitorConfig | null>(null);
  live = $state<LiveState>("stopped");
  phase = $state<"loading" | "ready" | "error">("loading");
  error = $state("");
  /** A problem the visitor should see without losing the chat (identity refused…). */
  notice = $state("");
  typingName = $state<string | null>(null);
  readSeq = $state(0);
  seenSeq = $state(0);
  open = $state(false);
  locale = $state<Locale>("en");
  /** The visitor's ratings of the bot's answers, by message seq. */
  ratings = $state.raw<Readonly<Record<number, "up" | "down">>>({});
  page = $state.raw<PageInfo | null>(null);
  t = $derived(translator(dicts, this.locale));
  unread = $derived(unreadCount(this.messages, this.readSeq));

  private readonly api: Api;
  private session: StoredSession | null = null;
  private socket: Live | null = null;
  private chain: Promise<unknown> = Promise.resolve();
  private historyLoaded = false;
  private typingTimer: ReturnType<typeof setTimeout> | null = null;
  private typingOn = false;
  private typingSentAt = 0;
  private idleTimer: ReturnType<typeof setTimeout> | null = null;
  /** Messages the server's rate held back, and the one timer that sends them again. */
  private readonly limited = new Set<string>();
  private limitTimer: ReturnType<typeof setTimeout> | null = null;
  private user: UserInfo | null = null;
  /** The last attributes stored, to skip repeats. */
  private attributesSent = "";
  private readonly storage = ownStorage();
  /** The token the page keeps for us when our own storage is refused. */
  private pageToken: string | null = null;

  constructor(
    readonly appKey: string,
    locale: Locale,
    /** Tells the page (when embedded): a new agent message. */
    private readonly onPageMessage: (m: PageMessage) => void = () => {},
    private readonly onReady: () => void = () => {},
    /** Asks the page to keep the token (only when our own storage is refused). */
    private readonly onPageToken: (token: string | null) => void = () => {},
    base = "",
  ) {
    this.locale = locale;
    this.api = new Api(base);
  }

  /** Runs page commands one after another; a failing one does not stop the next. */
  command(c: Command): Promise<unknown> {
    this.chain = this.chain.then(() => this.run(c)).catch((err) => this.report(err));
    return this.chain;
  }

  private async run(c: Command) {
    switch (c.type) {
      case "init":
        if (c.locale) this.locale = c.locale;
        this.page = c.page;
        this.open = c.open;
        this.pageToken = c.token;
        if (c.reset) this.storeToken(null);
        this.user = c.user;
        await this.start(c.user, c.attributes);
        return;
      case "setUser":
        // Pages often call setUser on every navigation: the same user again
        // costs no request (named-user sessions count against a rate limit).
        if (this.phase === "ready" && JSON.stringify(c.user) === JSON.stringify(this.user)) return;
        this.user = c.user;
        this.attributesSent = "";
        if (this.phase === "ready") await this.connect(this.sessionBody(c.user, null));
        return;
      case "setAttributes": {
        const json = JSON.stringify(c.attributes);
        if (!this.session || json === this.attributesSent) return;
        await this.connect(this.sessionBody(this.user, c.attributes));
        this.attributesSent = json;
        return;
      }
      case "setLocale":
        this.locale = c.locale;
        return;
      case "page":
        this.page = c.page;
        return;
      case "visibility":
        this.open = c.open;
        if (c.open) void this.refreshConfig();
        return;
      case "reset":
        this.user = null;
        this.attributesSent = "";
        this.storeToken(null);
        await this.connect({ app_key: this.appKey });
        return;
    }
  }

  /** First start: config and session, then history and the live connection. */
  async start(user: UserInfo | null = this.user, attributes: Record<string, unknown> | null = null) {
    this.phase = "loading";
    this.error = "";
    try {
      await Promise.all([this.refreshConfig(true), this.connect(this.sessionBody(user, attributes))]);
      this.phase = "ready";
      this.onReady();
    } catch (err) {
      this.phase = "error";
      this.error = this.t("error.load", { error: errorText(err, this.t("error.network")) });
    }
  }

  private sessionBody(user: UserInfo | null, attributes: Record<string, unknown> | null): Record<string, unknown> {
    const body: Record<string, unknown> = { app_key: this.appKey };
    const token = this.session?.token ?? this.storedToken();
    if (token) body.token = token;
    if (user) Object.assign(body, user);
    if (attributes) body.attributes = attributes;
    return body;
  }

  /** Opens (or switches) the session; a different conversation starts the thread over. */
  private async connect(body: Record<string, unknown>): Promise<void> {
    let answer: SessionAnswer;
    try {
      answer = await this.api.post<SessionAnswer>("/visitor/sessions", body);
    } catch (err) {
      if (err instanceof ApiError && (err.code === "identity_required" || err.code === "invalid_identity")) {
        if (this.session) {
          // Keep chatting as who we were; say why the switch did not happen.
          this.notice = this.t("error.identity", { error: err.message });
          return;
        }
        // Required identity failed on first start: fall back to an anonymous visitor.
        this.notice = this.t("error.identity", { error: err.message });
        return this.connect({ app_key: this.appKey, token: body.token });
      }
      throw err;
    }
    this.notice = "";
    const same = this.session?.conversation_id === answer.conversation_id && this.session.token === answer.token;
    const next: StoredSession = {
      token: answer.token,
      visitor_id: answer.visitor_id,
      conversation_id: answer.conversation_id,
    };
    this.storeToken(next.token);
    if (same) return;
    const switched = this.session !== null && this.session.conversation_id !== answer.conversation_id;
    this.stopLive();
    this.session = next;
    this.api.setToken(next.token);
    if (switched || !this.historyLoaded) {
      this.messages = [];
      this.outgoing = [];
      this.readSeq = 0;
      this.seenSeq = 0;
      this.typingName = null;
      this.historyLoaded = false;
      await this.loadHistory();
    }
    this.startLive();
  }

  private storedToken(): string | null {
    return this.storage ? loadToken(this.storage, this.appKey) : this.pageToken;
  }

  private storeToken(token: string | null) {
    if (this.storage) return saveToken(this.storage, this.appKey, token);
    if (token === this.pageToken) return;
    this.pageToken = token;
    this.onPageToken(token);
  }

  private async loadHistory() {
    let after = 0;
    for (let i = 0; i < 50; i++) {
      const page = await this.api.get<{ messages: Message[] }>("/visitor/messages", { after, limit: PAGE });
      this.messages = mergeMessages(this.messages, page.messages);
      if (page.messages.length < PAGE) break;
      after = lastSeq(this.messages);
    }
    try {
      const { read } = await this.api.get<{ read: { read_seq: number; seen_seq?: number } }>("/visitor/read");
      this.readSeq = Math.max(this.readSeq, read.read_seq);
      this.seenSeq = Math.max(this.seenSeq, read.seen_seq ?? 0);
    } catch {
      /* no badge rather than no chat */
    }
    this.historyLoaded = true;
  }

  private startLive() {
    const session = this.session;
    if (!session) return;
    const socket = new Live({
      url: () => this.api.wsUrl(`?app_key=${encodeURIComponent(this.appKey)}`),
      token: () => session.token,
      // Visitors must name their conversation to get the catch-up.
      resume: () => ({ [session.conversation_id]: lastSeq(this.messages) }),
      onFrame: (frame) => {
        if (this.socket === socket) this.onFrame(frame);
      },
      onState: (state) => {
        if (this.socket === socket) this.live = state;
      },
      onRefused: () => {
        if (this.socket === socket) this.notice = this.t("error.network");
      },
    });
    this.socket = socket;
    socket.start();
    // Sends that were waiting for a connection (a switch of session) go now.
    for (const o of this.outgoing) if (!o.failed && !o.uploading) this.deliver(o);
  }

  private stopLive() {
    const socket = this.socket;
    this.socket = null;
    socket?.stop();
    this.live = "stopped";
  }

  /** Stops everything (the frame is going away). */
  dispose() {
    this.stopLive();
    if (this.typingTimer) clearTimeout(this.typingTimer);
    if (this.idleTimer) clearTimeout(this.idleTimer);
  }

  private onFrame(frame: ServerFrame) {
    switch (frame.type) {
      case "message":
      case "ack":
        this.add(frame.message);
        break;
      case "typing":
        if (frame.sender?.type !== "agent") return;
        if (this.typingTimer) clearTimeout(this.typingTimer);
        this.typingName = frame.on ? frame.sender.name || this.t("typing.agent") : null;
        if (frame.on) this.typingTimer = setTimeout(() => (this.typingName = null), TYPING_SHOWN_MS);
        break;
      case "read":
        if (frame.sender?.type === "agent") this.seenSeq = Math.max(this.seenSeq, frame.seq);
        break;
    }
  }

  /** A stored message, from any path: kept once, in seq order; its pending copy goes. */
  add(m: Message) {
    if (this.session && m.conversation_id !== this.session.conversation_id) return;
    const before = this.messages;
    this.messages = insertMessage(before, m);
    if (m.client_msg_id) {
      if (this.find(m.client_msg_id)) this.discard(m.client_msg_id);
    }
    if (this.messages === before) return;
    if (m.sender.type === "agent") this.typingName = null;
    if (this.historyLoaded) {
      const pm = toPageMessage(m);
      if (pm) this.onPageMessage(pm);
    }
  }

  /** Marks everything held as read (the panel is open and visible). */
  markRead() {
    const seq = lastSeq(this.messages);
    if (!this.session || seq <= this.readSeq) return;
    this.readSeq = seq;
    if (!this.socket?.read(undefined, seq)) {
      this.api.post("/visitor/read", { seq }).catch(() => {});
    }
  }

  async refreshConfig(strict = false) {
    try {
      this.config = await this.api.get<VisitorConfig>("/visitor/config", { app_key: this.appKey });
    } catch (err) {
      if (strict) throw err;
    }
  }

  private meta() {
    return buildMeta(this.page, this.locale, typeof navigator !== "undefined" ? navigator.userAgent : "");
  }

  send(content: string, meta?: Record<string, unknown>) {
    const text = content.trim();
    if (!text) return;
    this.stopTyping();
    const o: Outgoing = { client_msg_id: clientMsgId(), content: text, created_at: Date.now(), meta };
    this.outgoing = [...this.outgoing, o];
    this.deliver(o);
  }

  /** The visitor picked one of the bot's "did you mean…" choices. */
  choose(entryId: string, question: string) {
    this.send(question, { assist_choice: entryId });
  }

  /** 👍/👎 on a bot answer; 👎 hands the chat to a person (server side). */
  async rate(seq: number, rating: "up" | "down") {
    const before = this.ratings;
    this.ratings = { ...before, [seq]: rating };
    try {
      await this.api.post("/visitor/assist/rating", { seq, rating });
    } catch (err) {
      this.ratings = before;
      this.notice = this.describe(err, this.t("error.network"));
    }
  }

  sendFile(file: File) {
    const o: Outgoing = { client_msg_id: clientMsgId(), content: "", created_at: Date.now(), file, fileName: file.name };
    this.outgoing = [...this.outgoing, o];
    void this.upload(o.client_msg_id);
  }

  private find(id: string): Outgoing | undefined {
    return this.outgoing.find((o) => o.client_msg_id === id);
  }

  /** Replaces an entry (the list is immutable, so the view sees the change). */
  private patch(id: string, change: Partial<Outgoing>): Outgoing | undefined {
    let out: Outgoing | undefined;
    this.outgoing = this.outgoing.map((o) => (o.client_msg_id === id ? (out = { ...o, ...change }) : o));
    return out;
  }

  private async upload(id: string) {
    const o = this.patch(id, { uploading: true, failed: undefined });
    if (!o?.file) return;
    const form = new FormData();
    form.append("file", o.file, o.file.name);
    try {
      const { attachment } = await this.api.post<{ attachment: Attachment }>("/visitor/attachments", form);
      const now = this.patch(id, { attachment_id: attachment.id, uploading: false });
      if (now) this.deliver(now);
    } catch (err) {
      this.patch(id, { uploading: false, failed: this.describe(err, this.t("error.network")) });
    }
  }

  private deliver(o: Outgoing) {
    const socket = this.socket;
    if (!socket) return; // sent when the next connection starts
    const id = o.client_msg_id;
    if (this.limitTimer) {
      this.limited.add(id); // behind the ones the rate held back
      return;
    }
    socket
      .sendMessage({ client_msg_id: id, content: o.content, meta: { ...this.meta(), ...o.meta }, attachment_id: o.attachment_id })
      .then((m) => this.add(m))
      .catch((err) => {
        // "stopped": the session switched; the next connection sends it again.
        if (err?.code === "stopped" && this.socket !== socket) return;
        this.patch(id, { failed: this.describe(err, "") });
        // Faster than the shop's message rate: nothing was stored, so the
        // same client_msg_id goes again once the server says it may.
        if (err instanceof SendError && err.code === "rate_limited") this.retryLater(id, err.retryAfterMs);
      });
  }

  /**
   * Sends `id` again after `ms` (the server's `retry_after_ms`). Every message
   * held back by the rate waits for one timer and then goes in the order it
   * was written, and newer ones queue behind them, so the shop reads them in
   * that order.
   */
  private retryLater(id: string, ms: number | undefined) {
    this.limited.add(id);
    if (this.limitTimer) return;
    const wait = Math.min(Math.max(ms ?? 1000, 100), 60_000);
    this.limitTimer = setTimeout(() => {
      this.limitTimer = null;
      const held = this.outgoing.filter((o) => this.limited.has(o.client_msg_id));
      this.limited.clear();
      for (const o of held) this.retry(o.client_msg_id);
    }, wait);
  }

  /** A failure in the reader's language where a visitor can act on it; the server's own text otherwise. */
  private describe(err: unknown, fallback: string): string {
    const code = err instanceof ApiError || err instanceof SendError ? err.code : undefined;
    if (code === "rate_limited") return this.t(err instanceof SendError ? "error.rate.messages" : "error.rate.uploads");
    if (code === "payload_too_large") return this.t("error.too_large");
    return errorText(err, fallback);
  }

  retry(id: string) {
    const o = this.patch(id, { failed: undefined });
    if (o?.file && !o.attachment_id) void this.upload(id);
    else if (o) this.deliver(o);
  }

  discard(id: string) {
    this.outgoing = this.outgoing.filter((o) => o.client_msg_id !== id);
  }

  /** The composer's text changed: typing on (repeated now and then), off when idle or empty. */
  typingInput(text: string) {
    if (!text.trim()) return this.stopTyping();
    const now = Date.now();
    if (!this.typingOn || now - this.typingSentAt > TYPING_REPEAT_MS) {
      if (this.socket?.typing(undefined, true)) {
        this.typingOn = true;
        this.typingSentAt = now;
      }
    }
    if (this.idleTimer) clearTimeout(this.idleTimer);
    this.idleTimer = setTimeout(() => this.stopTyping(), TYPING_IDLE_MS);
  }

  stopTyping() {
    if (this.idleTimer) clearTimeout(this.idleTimer);
    this.idleTimer = null;
    if (this.typingOn) this.socket?.typing(undefined, false);
    this.typingOn = false;
  }

  /** The offline form: a ticket and a message in the thread. Same id on retry. */
  async submitForm(email: string, content: string, clientMsgIdForRetry: string) {
    const answer = await this.api.post<{ ticket: VisitorTicket; message: Message }>("/visitor/tickets", {
      email: email.trim(),
      content,
      client_msg_id: clientMsgIdForRetry,
    });
    this.add(answer.message);
    return answer.ticket;
  }


  private report(err: unknown) {
    this.notice = errorText(err, this.t("error.network"));
  }
}

/** The server's message for a failed request, or `fallback` for a network failure. */
export function errorText(err: unknown, fallback: string): string {
  if (err instanceof ApiError) return err.status === 0 ? fallback : err.message;
  if (err instanceof Error && err.message) return err.message;
  return fallback;
}
