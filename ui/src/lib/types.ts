// The objects of docs/PROTOCOL.md and docs/API.md, as the UI reads them.
// They are generated from the server's Rust types (api-types.ts, never
// edited by hand: server/src/api_types.rs says how to regenerate it); this
// file gives the components their names for them.

export type {
  Agent,
  AgentRole,
  AgentStatus,
  AssistInsight,
  Attachment,
  CannedReply,
  Comment,
  Conversation,
  ConversationStatus,
  ErrorBody,
  IntentGuess,
  Message,
  MessageKind,
  Sender,
  SenderType,
  ServerFrame,
  Ticket,
  TicketEvent,
  TicketEventKind,
  TicketPriority,
  TicketRequester,
  TicketStatus,
  TicketVia,
  Visitor,
} from "./api-types";

/** Milliseconds since the Unix epoch, as every `*_at` member. */
export type Ms = number;
