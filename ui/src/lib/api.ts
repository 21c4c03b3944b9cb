// A small REST client for /api/v1: JSON in and out, the bearer token in a
// header (never in a URL), and the protocol's error body turned into an
// ApiError that callers branch on by `code`, never by message text.

import type { Conversation, Message, Ticket } from "./types";

export class ApiError extends Error {
  readonly status: number;
  readonly code: string;
  /** The request field at fault, when the server names one (docs/API.md, Errors). */
  readonly field: string | undefined;
  constructor(status: number, code: string, message: string, field?: string) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.field = field;
  }
}

export type Query = Record<string, string | number | boolean | null | undefined | string[]>;

/** Builds `?a=1&b=x` from the defined, non-empty values of `query`. */
export function queryString(query: Query | undefined): string {
  if (!query) return "";
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query)) {
    if (value === undefined || value === null || value === "") continue;
    if (Array.isArray(value)) {
      if (value.length) params.set(key, value.join(","));
    } else {
      params.set(key, String(value));
    }
  }
  const text = params.toString();
  return text ? `?${text}` : "";
}

export class Api {
  /** `base` is the server's origin, e.g. `http://127.0.0.1:5338`; `""` = this page's. */
  constructor(
    readonly base: string,
    private token: string | null = null,
    private readonly fetchImpl: typeof fetch = (...args) => fetch(...args),
  ) {}

  /** The Authorization header, for the few requests that are not JSON (CSV files). */
  authHeaders(): Record<string, string> {
    return this.token ? { Authorization: `Bearer ${this.token}` } : {};
  }

  setToken(token: string | null) {
    this.token = token;
  }

  get hasToken(): boolean {
    return this.token !== null;
  }

  /** The WebSocket URL of the same server. */
  wsUrl(query = ""): string {
    const origin = this.base || location.origin;
    return origin.replace(/^http/, "ws") + "/api/v1/ws" + query;
  }

  async request<T>(method: string, path: string, body?: unknown, query?: Query): Promise<T> {
    const headers: Record<string, string> = {};
    let payload: BodyInit | undefined;
    if (body instanceof FormData) {
      payload = body;
    } else if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      payload = JSON.stringify(body);
    }
    if (this.token) headers["Authorization"] = `Bearer ${this.token}`;
    let response: Response;
    try {
      response = await this.fetchImpl(`${this.base}/api/v1${path}${queryString(query)}`, {
        method,
        headers,
        body: payload,
      });
    } catch (err) {
      throw new ApiError(0, "network", err instanceof Error ? err.message : String(err));
    }
    const text = await response.text();
    let data: unknown = null;
    if (text) {
      try {
        data = JSON.parse(text);
      } catch {
        data = null;
      }
    }
    if (!response.ok) {
      const error = (data as { error?: { code?: string; message?: string; field?: string } } | null)?.error;
      throw new ApiError(
        response.status,
        error?.code ?? "internal",
        error?.message ?? `${response.status} ${response.statusText}`,
        typeof error?.field === "string" ? error.field : undefined,
      );
    }
    return data as T;
  }

  get<T>(path: string, query?: Query) {
    return this.request<T>("GET", path, undefined, query);
  }
  post<T>(path: string, body: unknown = {}) {
    return this.request<T>("POST", path, body);
  }
  patch<T>(path: string, body: unknown) {
    return this.request<T>("PATCH", path, body);
  }
  put<T>(path: string, body: unknown) {
    return this.request<T>("PUT", path, body);
  }
  delete<T>(path: string) {
    return this.request<T>("DELETE", path);
  }
}

// Typed calls of the endpoints the workstation uses most (docs/API.md): the
// path, the query and the answer's shape written once. Plain functions, so
// a build that does not use them (the widget) does not carry them. Other
// endpoints still go through `get`/`post` with a path.

/** `GET /conversations/{id}`. */
export async function getConversation(api: Api, id: string): Promise<Conversation> {
  const { conversation } = await api.get<{ conversation: Conversation }>(`/conversations/${encodeURIComponent(id)}`);
  return conversation;
}

/** Which messages of a conversation (docs/API.md, paging by `seq`). */
export interface MessagesQuery {
  /** Only messages with a greater `seq`. */
  after?: number;
  /** Only messages with a smaller `seq`: the newest `limit` of them. */
  before?: number;
  limit?: number;
}

/** `GET /conversations/{id}/messages`, in `seq` order. */
export async function getMessages(api: Api, id: string, query: MessagesQuery): Promise<Message[]> {
  const { messages } = await api.get<{ messages: Message[] }>(`/conversations/${encodeURIComponent(id)}/messages`, { ...query });
  return messages;
}

/** `GET /tickets/{number}`. */
export async function getTicket(api: Api, number: number): Promise<Ticket> {
  const { ticket } = await api.get<{ ticket: Ticket }>(`/tickets/${number}`);
  return ticket;
}

/** What `PATCH /tickets/{number}` may change; `assignee_id: null` unassigns. */
export type TicketUpdate = Partial<Pick<Ticket, "subject" | "description" | "status" | "priority" | "assignee_id" | "tags">>;

/** `PATCH /tickets/{number}`: the ticket as saved. */
export async function updateTicket(api: Api, number: number, fields: TicketUpdate): Promise<Ticket> {
  const { ticket } = await api.patch<{ ticket: Ticket }>(`/tickets/${number}`, fields);
  return ticket;
}
