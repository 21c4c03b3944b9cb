// The objects of docs/PROTOCOL.md and docs/API.md, as the UI reads them.

export type Ms = number;

export interface Sender {
  type: "visitor" | "agent" | "system";
  id: string;
  name: string;
}

export interface Attachment {
  id: string;
  name: string;
  size: number;
  mime: string;
  url: string;
}

export type MessageKind = "text" | "image" | "file" | "event" | "note";

export interface Message {
  id: string;
  conversation_id: string;
  seq: number;
  client_msg_id: string | null;
  kind: MessageKind;
  sender: Sender;
  content: string;
  meta: Record<string, unknown>;
  attachment: Attachment | null;
  created_at: Ms;
}

export type ConversationStatus = "queued" | "open" | "pending" | "resolved";

export interface Visitor {
  id: string;
  name: string | null;
  email: string | null;
  attributes: Record<string, unknown>;
}

export interface Conversation {
  id: string;
  app_id: string;
  visitor: Visitor;
  status: ConversationStatus;
  assignee_id: string | null;
  last_seq: number;
  last_message_at: Ms | null;
  created_at: Ms;
  unread_count?: number;
  visitor_read_seq?: number;
  team_id?: string | null;
  queued_at?: Ms | null;
  opened_at?: Ms | null;
  /** [ext] the conversation's last message (notes included), for list previews. */
  last_message?: Message | null;
  /** [ext] when `last_message` is an event line: the last message a person wrote before it. */
  last_said?: Message | null;
  /** [ext] Kefu Assist: urgent chats leave the queue first (docs/API.md 2.20). */
  priority?: "normal" | "urgent";
  /** [ext] Kefu Assist: predicted intent, language, urgency reasons. */
  assist?: AssistInsight | null;
}

export interface AssistInsight {
  intent: { name: string; confidence: number } | null;
  language: string | null;
  urgency: string[];
}

export type AgentStatus = "online" | "away" | "offline";

export interface Agent {
  id: string;
  username: string;
  display_name: string;
  role: "admin" | "agent";
  status: AgentStatus;
  max_concurrent?: number;
  active?: boolean;
}

export type TicketStatus = "open" | "pending" | "solved" | "closed";
export type TicketPriority = "low" | "normal" | "high" | "urgent";

export interface Ticket {
  number: number;
  subject: string;
  description: string;
  status: TicketStatus;
  priority: TicketPriority;
  assignee_id: string | null;
  conversation_id: string | null;
  requester: { visitor_id?: string; email?: string };
  tags: string[];
  via?: "agent" | "chat" | "form";
  transcript_seq?: number | null;
  created_at: Ms;
  updated_at: Ms;
}

export interface Comment {
  id: string;
  ticket_number: number;
  author_id: string;
  body: string;
  public: boolean;
  client_msg_id: string | null;
  message_seq: number | null;
  created_at: Ms;
}

export interface TicketEvent {
  id: number;
  ticket_number: number;
  actor: { type: "agent" | "visitor" | "system"; id: string | null };
  kind: string;
  from: unknown;
  to: unknown;
  created_at: Ms;
}

/** A canned reply (docs/API.md §2.10); `owner_id` null = shared. */
export interface CannedReply {
  id: string;
  shortcut: string;
  title: string;
  body: string;
  shared: boolean;
  owner_id: string | null;
  created_at: number;
  updated_at: number;
}

/** Frames the server sends over the WebSocket (docs/API.md section 4.5). */
export type ServerFrame =
  | { type: "welcome"; role: "visitor" | "agent"; id: string }
  | { type: "message"; message: Message }
  | { type: "ack"; client_msg_id: string; message: Message }
  | { type: "error"; code: string; message: string; client_msg_id?: string; retry_after_ms?: number }
  | { type: "pong" }
  | { type: "typing"; conversation_id: string; on: boolean; sender: Sender }
  | { type: "read"; conversation_id: string; seq: number; sender: Sender }
  | { type: "conversation"; conversation: Conversation }
  | { type: "ticket"; ticket: Ticket }
  | { type: "agent"; agent: Agent };
