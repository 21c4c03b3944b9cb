// The live conversations of the workstation: the list, the queue and the
// threads that are open, kept right by frames and by refetching after each
// reconnect, so that the screen is exactly right after any disconnect
// without a reload. The decisions live in logic.ts (unit-tested); this file
// wires them to the REST API and the one WebSocket of the session.
//
// Resume: every known conversation goes into each hello with the highest
// seq held (a loaded thread: its last seq; else the list's last_seq), so the
// server replays exactly what was missed; frames that are not replayed
// (`conversation`) are covered by refetching the list and the queue, and
// loaded threads also fetch `after=lastSeq` as a safety net. Everything is
// deduped by seq, so a message seen twice changes nothing.

import { ApiError, getConversation, getMessages } from "../../lib/api";
import { clientMsgId } from "../../lib/ids";
import type { SendInput } from "../../lib/live";
import {
  insertMessage,
  lastSeq,
  mergeMessages,
  missingSeqs,
  settlePending,
  type PendingMessage,
} from "../../lib/thread";
import type { Attachment, Conversation, ConversationStatus, Message, ServerFrame } from "../../lib/types";
import { session } from "../session.svelte";
import {
  applyMessage,
  countsAsUnread,
  gapRange,
  isMine,
  mergeConversation,
  queueFromServer,
  resumeMap,
  unreadTotal,
  updateQueue,
  type QueueEntry,
} from "./logic";

export interface LocalPending extends PendingMessage {
  attachment: Attachment | null;
  /** Sent as the message's `meta` (`canned_id` when a canned reply was inserted). */
  meta?: Record<string, unknown>;
}

export interface ThreadState {
  messages: readonly Message[];
  pending: readonly LocalPending[];
  /** The newest page has arrived. */
  loaded: boolean;
  loading: boolean;
  hasOlder: boolean;
  loadingOlder: boolean;
  error: string;
}

const PAGE = 50;
const LIST_PAGE = 200;
const LIST_PAGES_MAX = 10;
const TYPING_SHOWN_MS = 7000;
/** Threads kept in memory (and refetched after reconnects); older ones are dropped. */
const THREADS_KEPT = 20;

function emptyThread(): ThreadState {
  return { messages: [], pending: [], loaded: false, loading: false, hasOlder: false, loadingOlder: false, error: "" };
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

class ChatsStore {
  /** Every conversation known, by id. */
  conversations = $state.raw<Record<string, Conversation>>({});
  /** Waiting chats, FIFO. */
  queue = $state.raw<QueueEntry[]>([]);
  queueTotal = $state(0);
  threads = $state.raw<Record<string, ThreadState>>({});
  /** Conversation id → until when the visitor shows as typing. */
  typing = $state.raw<Record<string, number>>({});
  /** The first load of the list and queue is done. */
  ready = $state(false);
  error = $state("");
  /** The conversation on screen. */
  activeId = $state<string | null>(null);
  /** The window is visible and focused: the open thread is being read. */
  attentive = $state(true);

  list = $derived(Object.values(this.conversations));
  unreadTotal = $derived(unreadTotal(this.list, session.me?.id ?? null));

  /** Called for a new visitor message the agent is not looking at (sound, title). */
  onAlert: ((message: Message, conversation: Conversation) => void) | null = null;

  private stops: (() => void)[] = [];
  private loadingLists = false;
  /** Threads by most recent opening (for dropping old ones). */
  private opened: string[] = [];
  private refreshAgain = false;
  /** Frames that arrived while the list was being (re)fetched: applied again after it. */
  private buffered: ServerFrame[] = [];
  private readSent: Record<string, number> = {};
  private gapFetching = new Set<string>();
  private typingTimer: ReturnType<typeof setInterval> | null = null;

  private get meId(): string | null {
    return session.me?.id ?? null;
  }

  start() {
    this.stop();
    this.stops.push(
      session.on("message", (f) => this.onMessage(f.message, f)),
      session.on("ack", (f) => this.onMessage(f.message, f)),
      session.on("conversation", (f) => this.onConversation(f.conversation, f)),
      session.on("typing", (f) => this.onTyping(f)),
      session.on("read", (f) => this.onRead(f)),
      session.addResumeSource(() => this.resume()),
      session.onWelcome((reconnected) => {
        if (reconnected) void this.afterReconnect();
      }),
    );
    if (typeof document !== "undefined") {
      const update = () => {
        this.attentive = document.visibilityState === "visible" && document.hasFocus();
        if (this.attentive && this.activeId) this.markRead(this.activeId);
      };
      update();
      document.addEventListener("visibilitychange", update);
      window.addEventListener("focus", update);
      window.addEventListener("blur", update);
      this.stops.push(() => {
        document.removeEventListener("visibilitychange", update);
        window.removeEventListener("focus", update);
        window.removeEventListener("blur", update);
      });
    }
    this.typingTimer = setInterval(() => this.expireTyping(), 1000);
    void this.refresh();
  }

  stop() {
    for (const stop of this.stops) stop();
    this.stops = [];
    if (this.typingTimer) clearInterval(this.typingTimer);
    this.typingTimer = null;
    this.conversations = {};
    this.queue = [];
    this.threads = {};
    this.opened = [];
    this.typing = {};
    this.readSent = {};
    this.firstMessages = {};
    this.firstAsked.clear();
    this.ready = false;
    this.activeId = null;
  }

  /** The resume map of the next hello. */
  resume(): Record<string, number> {
    return resumeMap(this.list, (id) => {
      const t = this.threads[id];
      return t && t.loaded ? lastSeq(t.messages) : null;
    });
  }

  isReading(id: string): boolean {
    return this.activeId === id && this.attentive;
  }

  // ---- loading ---------------------------------------------------------

  /** (Re)loads the list (all pages, bounded) and the queue. */
  async refresh(): Promise<void> {
    if (this.loadingLists) {
      // A reconnect during a load: what that load returns may predate it.
      this.refreshAgain = true;
      return;
    }
    this.loadingLists = true;
    this.refreshAgain = false;
    this.buffered = [];
    try {
      const fetched: Conversation[] = [];
      let cursor: string | null = null;
      for (let page = 0; page < LIST_PAGES_MAX; page++) {
        const res: { conversations: Conversation[]; next_cursor: string | null } = await session.api.get(
          "/conversations",
          { limit: LIST_PAGE, cursor },
        );
        fetched.push(...res.conversations);
        cursor = res.next_cursor;
        if (!cursor) break;
      }
      const queue = await session.api.get<{ total: number; queue: { waiting_ms: number; conversation: Conversation }[] }>(
        "/queue",
        { limit: 200 },
      );
      const next = { ...this.conversations };
      for (const c of fetched) next[c.id] = { ...c, last_message: c.last_message ?? this.previewFor(c) };
      for (const e of queue.queue) next[e.conversation.id] = mergeConversation(next[e.conversation.id], e.conversation);
      this.conversations = next;
      this.queue = queueFromServer(queue.queue);
      this.queueTotal = queue.total;
      this.error = "";
      this.ready = true;
    } catch (err) {
      this.error = errorText(err);
    } finally {
      this.loadingLists = false;
      const replay = this.buffered;
      this.buffered = [];
      for (const f of replay) this.replayFrame(f);
    }
    if (this.refreshAgain) await this.refresh();
  }

  /** A preview from a loaded thread when the server gives none. */
  private previewFor(c: Conversation): Conversation["last_message"] {
    const t = this.threads[c.id];
    const last = t?.messages[t.messages.length - 1];
    return last && last.seq === c.last_seq ? last : (this.conversations[c.id]?.last_message ?? undefined);
  }

  private replayFrame(f: ServerFrame) {
    if (f.type === "message" || f.type === "ack") this.onMessage(f.message, undefined, true);
    else if (f.type === "conversation") this.onConversation(f.conversation);
  }

  private async afterReconnect() {
    // A `read` sent just before the drop may never have arrived: send again
    // (markers are forward-only, so a repeat is harmless).
    this.readSent = {};
    await this.refresh();
    for (const [id, t] of Object.entries(this.threads)) {
      if (t.loaded) void this.fetchAfter(id, lastSeq(t.messages)).catch(() => {});
    }
    if (this.activeId) this.markRead(this.activeId);
  }

  /** Opens a thread: the conversation itself and its newest page. */
  async open(id: string) {
    this.activeId = id;
    this.opened = [id, ...this.opened.filter((x) => x !== id)];
    if (this.opened.length > THREADS_KEPT) {
      const dropped = this.opened.slice(THREADS_KEPT);
      this.opened = this.opened.slice(0, THREADS_KEPT);
      const next = { ...this.threads };
      // Unsent messages keep their thread.
      for (const x of dropped) if (!next[x]?.pending.length) delete next[x];
      this.threads = next;
    }
    const held = this.threads[id];
    if (held?.loaded || held?.loading) {
      if (held.loaded) void this.fetchAfter(id, lastSeq(held.messages)).catch(() => {});
      this.markRead(id);
      return;
    }
    this.patchThread(id, (t) => ({ ...t, loading: true, error: "" }));
    try {
      const conversation = await getConversation(session.api, id);
      this.putConversation(conversation, true);
      const messages = await getMessages(session.api, id, { before: conversation.last_seq + 1, limit: PAGE });
      this.patchThread(id, (t) => {
        const merged = mergeMessages(t.messages, messages);
        return {
          ...t,
          messages: merged,
          pending: settlePending(t.pending, merged) as LocalPending[],
          loaded: true,
          loading: false,
          hasOlder: merged.length ? merged[0].seq > 1 : false,
        };
      });
      // Anything newer than the page (it raced the request) and any gap.
      await this.fetchAfter(id, lastSeq(this.threads[id].messages));
      this.checkGaps(id);
      this.markRead(id);
    } catch (err) {
      this.patchThread(id, (t) => ({ ...t, loading: false, error: errorText(err) }));
    }
  }

  close(id: string) {
    if (this.activeId === id) this.activeId = null;
  }

  async loadOlder(id: string) {
    const t = this.threads[id];
    if (!t || !t.loaded || !t.hasOlder || t.loadingOlder || !t.messages.length) return;
    this.patchThread(id, (x) => ({ ...x, loadingOlder: true }));
    try {
      const messages = await getMessages(session.api, id, { before: t.messages[0].seq, limit: PAGE });
      this.patchThread(id, (x) => {
        const merged = mergeMessages(x.messages, messages);
        return { ...x, messages: merged, loadingOlder: false, hasOlder: merged.length ? merged[0].seq > 1 : false };
      });
    } catch (err) {
      this.patchThread(id, (x) => ({ ...x, loadingOlder: false, error: errorText(err) }));
    }
  }

  /** Fetches every message after `after` (the catch-up's safety net). */
  private async fetchAfter(id: string, after: number, before?: number) {
    for (let i = 0; i < 50; i++) {
      const messages = await getMessages(session.api, id, { after, before, limit: 200 });
      if (messages.length) this.insert(id, messages);
      if (messages.length < 200) return;
      after = messages[messages.length - 1].seq;
    }
  }

  /** Seqs missing inside a loaded thread (a frame lost, a gap): fetch them. */
  private checkGaps(id: string) {
    const t = this.threads[id];
    if (!t?.loaded || this.gapFetching.has(id)) return;
    const range = gapRange(missingSeqs(t.messages));
    if (!range) return;
    this.gapFetching.add(id);
    void this.fetchAfter(id, range.after, range.before)
      .catch(() => {})
      .finally(() => {
        this.gapFetching.delete(id);
      });
  }

  private insert(id: string, messages: readonly Message[]) {
    this.patchThread(id, (t) => {
      const merged = mergeMessages(t.messages, messages);
      if (merged === t.messages) return t;
      return { ...t, messages: merged, pending: settlePending(t.pending, merged) as LocalPending[] };
    });
    const c = this.conversations[id];
    if (c) {
      let next = c;
      for (const m of messages) next = applyMessage(next, m, this.meId, this.isReading(id));
      if (next !== c) this.conversations = { ...this.conversations, [id]: next };
    }
  }

  private patchThread(id: string, fn: (t: ThreadState) => ThreadState) {
    const held = this.threads[id] ?? emptyThread();
    const next = fn(held);
    if (next !== held || !this.threads[id]) this.threads = { ...this.threads, [id]: next };
  }

  // ---- frames ----------------------------------------------------------

  private onMessage(m: Message, frame?: ServerFrame, replayed = false) {
    if (frame && this.loadingLists) this.buffered.push(frame);
    const id = m.conversation_id;
    const c = this.conversations[id];
    const fresh = !c || m.seq > c.last_seq;
    if (c) {
      const next = applyMessage(c, m, this.meId, this.isReading(id));
      if (next !== c) this.conversations = { ...this.conversations, [id]: next };
    } else if (!this.loadingLists) {
      void this.fetchConversation(id);
    }
    const t = this.threads[id];
    if (t && (t.loaded || t.loading)) {
      this.patchThread(id, (x) => {
        const messages = insertMessage(x.messages, m);
        if (messages === x.messages) return x;
        return { ...x, messages, pending: settlePending(x.pending, messages) as LocalPending[] };
      });
      this.checkGaps(id);
    }
    if (m.sender.type === "visitor" && this.typing[id]) {
      const { [id]: _gone, ...rest } = this.typing;
      this.typing = rest;
    }
    if (this.isReading(id) && !isMine(m, this.meId)) this.markRead(id);
    const conv = this.conversations[id];
    if (fresh && !replayed && conv && m.sender.type === "visitor" && countsAsUnread(m, this.meId) && !this.isReading(id)) {
      const forMe = conv.assignee_id === this.meId || conv.assignee_id === null;
      if (forMe) this.onAlert?.(m, conv);
    }
  }

  private async fetchConversation(id: string) {
    try {
      this.putConversation(await getConversation(session.api, id), true);
    } catch {
      // The next refresh will bring it.
    }
  }

  private onConversation(c: Conversation, frame?: ServerFrame) {
    if (frame && this.loadingLists) this.buffered.push(frame);
    this.putConversation(c, false);
  }

  /** Puts a conversation (a frame, an action's answer, a fetch) into the list and the queue. */
  putConversation(c: Conversation, authoritative: boolean) {
    const held = this.conversations[c.id];
    let next = mergeConversation(held, c);
    if (authoritative && c.unread_count !== undefined) next = { ...next, unread_count: c.unread_count };
    if (this.isReading(c.id)) next = { ...next, unread_count: 0 };
    this.conversations = { ...this.conversations, [c.id]: next };
    const before = this.queue.length;
    this.queue = updateQueue(this.queue, next);
    this.queueTotal = Math.max(0, this.queueTotal + (this.queue.length - before));
  }

  private onTyping(f: Extract<ServerFrame, { type: "typing" }>) {
    if (f.sender?.type !== "visitor") return;
    if (f.on) this.typing = { ...this.typing, [f.conversation_id]: Date.now() + TYPING_SHOWN_MS };
    else if (this.typing[f.conversation_id]) {
      const { [f.conversation_id]: _gone, ...rest } = this.typing;
      this.typing = rest;
    }
  }

  private expireTyping() {
    const now = Date.now();
    const entries = Object.entries(this.typing);
    const kept = entries.filter(([, until]) => until > now);
    if (kept.length !== entries.length) this.typing = Object.fromEntries(kept);
  }

  private onRead(f: Extract<ServerFrame, { type: "read" }>) {
    const c = this.conversations[f.conversation_id];
    if (!c) return;
    if (f.sender?.type === "visitor") {
      if (f.seq > (c.visitor_read_seq ?? 0)) {
        this.conversations = { ...this.conversations, [c.id]: { ...c, visitor_read_seq: f.seq } };
      }
    } else if (f.sender?.type === "agent" && f.sender.id === this.meId) {
      // Read in another tab or device: the badge clears here too.
      this.readSent[c.id] = Math.max(this.readSent[c.id] ?? 0, f.seq);
      if (f.seq >= c.last_seq && c.unread_count) {
        this.conversations = { ...this.conversations, [c.id]: { ...c, unread_count: 0 } };
      }
    }
  }

  // ---- actions ---------------------------------------------------------

  /** Marks the thread read up to its last seq (WebSocket, REST when not connected). */
  markRead(id: string) {
    if (!this.isReading(id)) return;
    const c = this.conversations[id];
    if (!c) return;
    const t = this.threads[id];
    const seq = Math.max(t?.loaded ? lastSeq(t.messages) : 0, c.last_seq);
    if (c.unread_count) this.conversations = { ...this.conversations, [id]: { ...c, unread_count: 0 } };
    if (seq <= 0 || seq <= (this.readSent[id] ?? 0)) return;
    this.readSent[id] = seq;
    const ok = session.socket?.read(id, seq) ?? false;
    if (!ok) {
      void session.api.post(`/conversations/${encodeURIComponent(id)}/read`, { seq }).catch(() => {
        delete this.readSent[id];
      });
    }
  }

  /** Sends a message or note: shown at once as pending, resent by the outbox after reconnects. */
  send(id: string, input: { content: string; private: boolean; attachment?: Attachment | null; meta?: Record<string, unknown> }) {
    const pending: LocalPending = {
      client_msg_id: clientMsgId(),
      content: input.content,
      private: input.private,
      created_at: Date.now(),
      attachment: input.attachment ?? null,
    };
    if (input.meta) pending.meta = input.meta;
    this.patchThread(id, (t) => ({ ...t, pending: [...t.pending, pending] }));
    this.deliver(id, pending);
  }

  /** Sends a failed message again, with the same client_msg_id. */
  retry(id: string, clientId: string) {
    const p = this.threads[id]?.pending.find((x) => x.client_msg_id === clientId);
    if (!p) return;
    const again = { ...p, failed: undefined };
    this.patchThread(id, (t) => ({ ...t, pending: t.pending.map((x) => (x.client_msg_id === clientId ? again : x)) }));
    this.deliver(id, again);
  }

  /** Drops a failed message the agent gave up on. */
  discard(id: string, clientId: string) {
    this.patchThread(id, (t) => ({ ...t, pending: t.pending.filter((x) => x.client_msg_id !== clientId) }));
  }

  private deliver(id: string, p: LocalPending) {
    const socket = session.socket;
    const fail = (message: string) =>
      this.patchThread(id, (t) => ({
        ...t,
        pending: t.pending.map((x) => (x.client_msg_id === p.client_msg_id ? { ...x, failed: message } : x)),
      }));
    if (!socket) return fail("offline");
    const input: SendInput = {
      conversation_id: id,
      content: p.content,
      private: p.private,
      client_msg_id: p.client_msg_id,
    };
    if (p.attachment) input.attachment_id = p.attachment.id;
    if (p.meta) input.meta = p.meta;
    socket.sendMessage(input).then(
      (message) => this.insert(id, [message]),
      (err: unknown) => fail(errorText(err)),
    );
  }

  typingSignal(id: string, on: boolean) {
    session.socket?.typing(id, on);
  }

  /** The first message of each waiting chat (the queue's preview), fetched once each. */
  firstMessages = $state.raw<Record<string, Message | null>>({});
  private firstAsked = new Set<string>();

  async loadFirstMessage(id: string) {
    if (this.firstAsked.has(id)) return;
    this.firstAsked.add(id);
    try {
      const messages = await getMessages(session.api, id, { after: 0, limit: 5 });
      const first = messages.find((m) => m.sender.type === "visitor") ?? messages[0] ?? null;
      this.firstMessages = { ...this.firstMessages, [id]: first };
    } catch {
      this.firstAsked.delete(id);
    }
  }

  async claim(id: string): Promise<Conversation> {
    try {
      const { conversation } = await session.api.post<{ conversation: Conversation }>(
        `/conversations/${encodeURIComponent(id)}/claim`,
      );
      this.putConversation(conversation, false);
      return conversation;
    } catch (err) {
      if (err instanceof ApiError && err.status === 409) {
        // Someone else took it: out of the queue at once (its frame follows).
        this.queue = this.queue.filter((e) => e.conversation.id !== id);
        this.queueTotal = Math.max(0, this.queueTotal - 1);
      }
      throw err;
    }
  }

  async assign(id: string, agentId: string | null) {
    const { conversation } = await session.api.post<{ conversation: Conversation }>(
      `/conversations/${encodeURIComponent(id)}/assign`,
      { agent_id: agentId },
    );
    this.putConversation(conversation, false);
  }

  async setStatus(id: string, status: Exclude<ConversationStatus, "queued">) {
    const { conversation } = await session.api.post<{ conversation: Conversation }>(
      `/conversations/${encodeURIComponent(id)}/status`,
      { status },
    );
    this.putConversation(conversation, false);
  }

  async transfer(id: string, target: { agent_id: string } | { team_id: string }, note: string) {
    const body: Record<string, string> = { ...target };
    if (note.trim()) body.note = note;
    const { conversation } = await session.api.post<{ conversation: Conversation }>(
      `/conversations/${encodeURIComponent(id)}/transfer`,
      body,
    );
    this.putConversation(conversation, false);
  }
}

export const chats = new ChatsStore();
