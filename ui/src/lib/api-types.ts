// Generated from the server's Rust types by ts-rs (server/src/api_types.rs):
// do not edit. A test fails when it differs from what the server sends;
// regenerate with
//   KEFU_WRITE_API_TYPES=1 cargo nextest run --workspace --all-targets -E 'test(/api_types/)'
// 64-bit integers are `number`: ids are strings, and counts, sequence
// numbers and millisecond times stay far below 2^53.

export type AgentId = string;

/**
 * An app: one website or mobile APP integration.
 */
export type AppId = string;

export type AttachmentId = string;

export type CommentId = string;

/**
 * A conversation; its 16 bytes prefix every key of it in the message log.
 */
export type ConversationId = string;

export type MessageId = string;

export type TeamId = string;

export type VisitorId = string;

export type SenderType = "visitor" | "agent" | "system";

export type Sender = {
  type: SenderType,
  id: string,
  name: string,
};

/**
 * The protocol's attachment object, as in uploads and `Message.attachment`.
 */
export type Attachment = {
  id: AttachmentId,
  name: string,
  size: number,
  mime: string,
  url: string,
};

export type MessageKind = "text" | "image" | "file" | "event" | "note";

/**
 * A message as stored and as sent on the wire (docs/PROTOCOL.md, "Objects").
 */
export type Message = {
  id: MessageId,
  conversation_id: ConversationId,
  seq: number,
  client_msg_id: string | null,
  kind: MessageKind,
  sender: Sender,
  content: string,
  meta: Record<string, unknown>,
  attachment: Attachment | null,
  created_at: number,
};

export type ConversationStatus = "queued" | "open" | "pending" | "resolved";

export type Visitor = {
  id: VisitorId,
  name: string | null,
  email: string | null,
  attributes: Record<string, unknown>,
};

/**
 * The predicted intent of a conversation.
 */
export type IntentGuess = {
  name: string,
  confidence: number,
};

/**
 * The conversation's `assist` member.
 */
export type AssistInsight = {
  /**
   * `null` when the app has no ready model or the message has no words.
   */
  intent: IntentGuess | null,
  /**
   * A code of [`super::language::CODES`], or `null` (no letters).
   */
  language: string | null,
  /**
   * Why the chat is urgent (empty: it is not).
   */
  urgency: Array<string>,
};

/**
 * The protocol's `Conversation` object.
 */
export type Conversation = {
  id: ConversationId,
  app_id: AppId,
  visitor: Visitor,
  status: ConversationStatus,
  assignee_id: AgentId | null,
  last_seq: number,
  last_message_at: number | null,
  created_at: number,
  /**
   * [ext] For the agent that asked: see `reads::fill_for_agent`.
   */
  unread_count?: number,
  /**
   * [ext] How far the visitor has read (agent views only).
   */
  visitor_read_seq?: number,
  /**
   * [ext] The team routing sent it to (rules, transfer); null: everyone.
   */
  team_id: TeamId | null,
  /**
   * [ext] While `queued`: since when it waits (the queue is FIFO by it).
   */
  queued_at: number | null,
  /**
   * [ext] Start of the current session (first or reopening visitor message).
   */
  opened_at: number | null,
  /**
   * [ext] The last message (notes included), for list previews; agent
   * views only (`fill_last_message`).
   */
  last_message?: Message,
  /**
   * [ext] When `last_message` is an event line ("boss joined"): the last
   * message a person wrote before it, among the last
   * [`LAST_SAID_LOOKBACK`]; what a chat list shows as its preview.
   */
  last_said?: Message,
  /**
   * [ext] The asking agent's own read marker (see `reads::fill_for_agent`).
   */
  read_seq?: number,
  /**
   * [ext] `normal` or `urgent` (Kefu Assist's urgency signals; urgent
   * chats are served first from the queue).
   */
  priority: "normal" | "urgent",
  /**
   * [ext] What Kefu Assist read: predicted intent, language, urgency
   * reasons (`null` before the first message).
   */
  assist: AssistInsight | null,
};

export type AgentRole = "admin" | "agent";

export type AgentStatus = "online" | "away" | "offline";

/**
 * The protocol's `Agent` object.
 */
export type Agent = {
  id: AgentId,
  username: string,
  display_name: string,
  role: AgentRole,
  status: AgentStatus,
  max_concurrent: number,
  /**
   * [ext] False once an admin deactivated the agent.
   */
  active: boolean,
};

export type TicketStatus = "open" | "pending" | "solved" | "closed";

export type TicketPriority = "low" | "normal" | "high" | "urgent";

/**
 * Where a ticket came from.
 */
export type TicketVia = "agent" | "chat" | "form";

export type TicketRequester = {
  visitor_id?: VisitorId,
  email?: string,
};

/**
 * The protocol's `Ticket` object, plus `via` and `transcript_seq` [ext].
 */
export type Ticket = {
  number: number,
  subject: string,
  description: string,
  status: TicketStatus,
  priority: TicketPriority,
  assignee_id: AgentId | null,
  conversation_id: ConversationId | null,
  requester: TicketRequester,
  tags: Array<string>,
  via: TicketVia,
  /**
   * The attached transcript is the linked conversation's messages with
   * `seq <= transcript_seq`; `null` when none is attached.
   */
  transcript_seq: number | null,
  created_at: number,
  updated_at: number,
};

/**
 * A ticket comment. `client_msg_id` and `message_seq` are [ext].
 */
export type Comment = {
  id: CommentId,
  ticket_number: number,
  author_id: AgentId,
  body: string,
  public: boolean,
  /**
   * The author's id for this post: a retried post returns the original.
   */
  client_msg_id: string | null,
  /**
   * A public reply delivered into the linked conversation: its seq there.
   */
  message_seq: number | null,
  created_at: number,
};

/**
 * What changed.
 */
export type TicketEventKind = "created" | "subject" | "description" | "status" | "priority" | "assignee" | "tags" | "comment";

export type TicketEventActor = {
  type: "agent" | "visitor" | "system",
  id: string | null,
};

/**
 * One change, as served.
 */
export type TicketEvent = {
  id: number,
  ticket_number: number,
  actor: TicketEventActor,
  kind: TicketEventKind,
  from: unknown,
  to: unknown,
  created_at: number,
};

export type CannedReply = {
  id: string,
  shortcut: string,
  title: string,
  body: string,
  /**
   * `None` for a shared reply.
   */
  owner_id: AgentId | null,
  shared: boolean,
  created_at: number,
  updated_at: number,
};

/**
 * The new host of a shop that was handed over (docs/API.md §2.24).
 */
export type MovedTo = {
  /**
   * The new host's device ID.
   */
  device_id: string,
  /**
   * Where it serves its LAN listener, when the handover said.
   */
  address?: string,
  /**
   * The term the new host took.
   */
  term: number,
};

export type ErrorDetail = {
  code: string,
  message: string,
  /**
   * The request field at fault; absent when the error is not about one.
   */
  field?: string,
  /**
   * Where the shop went, on a LAN host that handed it over (503
   * `unavailable`); absent otherwise.
   */
  successor?: MovedTo,
};

export type ErrorBody = {
  error: ErrorDetail,
};

/**
 * Frames the server sends over the WebSocket (docs/API.md, section 4.5).
 */
export type ServerFrame =
  | {
      "type": "welcome",
      role: "visitor" | "agent",
      id: string,
      /**
       * [ext] The LAN host's term (docs/LAN.md, "Terms"), agents only.
       */
      term?: number,
    }
  | {
      "type": "message",
      message: Message,
    }
  | {
      "type": "ack",
      client_msg_id: string,
      message: Message,
    }
  | {
      "type": "error",
      code: string,
      message: string,
      /**
       * The frame member at fault, when the error is about one.
       */
      field?: string,
      client_msg_id?: string,
      /**
       * A visitor's message rate: when the next message is accepted.
       */
      retry_after_ms?: number,
    }
  | {
      "type": "pong",
    }
  | {
      "type": "typing",
      conversation_id: ConversationId,
      on: boolean,
      sender: Sender,
    }
  | {
      "type": "read",
      conversation_id: ConversationId,
      seq: number,
      sender: Sender,
    }
  | {
      "type": "conversation",
      conversation: Conversation,
    }
  | {
      "type": "ticket",
      ticket: Ticket,
    }
  | {
      "type": "agent",
      agent: Agent,
    };
