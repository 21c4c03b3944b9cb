// Which live frames become desktop notifications: a chat that starts
// waiting in the queue, a visitor's message in one of my chats, a ticket
// that becomes mine. Pure bookkeeping (unit-tested); the shell decides
// whether to show each one (window focus, the agent's settings).
import type { Conversation, Message, Ticket } from "../lib/types";
import type { DesktopEvent } from "./bridge";

interface Known {
  status: Conversation["status"];
  assignee: string | null;
  visitor: string;
}

/** A ticket first seen this soon after its creation is new, not an update. */
const NEW_TICKET_MS = 60_000;

export function visitorLabel(c: Pick<Conversation, "visitor">, fallback: string): string {
  return c.visitor.name?.trim() || c.visitor.email?.trim() || fallback;
}

export class Watcher {
  private readonly conversations = new Map<string, Known>();
  private readonly tickets = new Map<number, string | null>();

  constructor(
    private readonly me: () => string | null,
    private readonly visitorFallback: () => string,
    private readonly now: () => number = Date.now,
  ) {}

  /** Conversations known from a list: remembered without notifying. */
  seed(conversations: Conversation[]) {
    for (const c of conversations) this.remember(c);
  }

  knows(conversationId: string): boolean {
    return this.conversations.has(conversationId);
  }

  conversation(c: Conversation): DesktopEvent | null {
    const before = this.conversations.get(c.id);
    this.remember(c);
    if (c.status !== "queued" || before?.status === "queued") return null;
    const last = c.last_message;
    return {
      kind: "queue",
      title: visitorLabel(c, this.visitorFallback()),
      body: last && last.kind === "text" ? last.content : "",
      target: c.id,
    };
  }

  message(m: Message): DesktopEvent | null {
    if (m.sender.type !== "visitor") return null;
    if (m.kind !== "text" && m.kind !== "image" && m.kind !== "file") return null;
    const known = this.conversations.get(m.conversation_id);
    const me = this.me();
    if (!known || !me || known.assignee !== me) return null;
    return {
      kind: "message",
      title: m.sender.name?.trim() || known.visitor,
      body: m.kind === "text" ? m.content : (m.attachment?.name ?? ""),
      target: m.conversation_id,
    };
  }

  ticket(t: Ticket): DesktopEvent | null {
    const seen = this.tickets.has(t.number);
    const before = this.tickets.get(t.number) ?? null;
    this.tickets.set(t.number, t.assignee_id);
    const me = this.me();
    if (!me || t.assignee_id !== me) return null;
    const becameMine = seen ? before !== me : this.now() - t.created_at < NEW_TICKET_MS;
    if (!becameMine) return null;
    return { kind: "ticket", title: `#${t.number} ${t.subject}`, body: t.description.slice(0, 200), target: String(t.number) };
  }

  private remember(c: Conversation) {
    this.conversations.set(c.id, {
      status: c.status,
      assignee: c.assignee_id,
      visitor: visitorLabel(c, this.visitorFallback()),
    });
  }
}
