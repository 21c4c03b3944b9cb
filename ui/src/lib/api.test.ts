// The typed endpoint calls: the path, query and body they send, the member
// of the answer they return, and the protocol's error body as ApiError.
import { describe, expect, it } from "vitest";
import { Api, ApiError, getConversation, getMessages, getTicket, updateTicket } from "./api";

interface Seen {
  method: string;
  url: string;
  body: unknown;
  auth: string | null;
}

function fake(status: number, answer: unknown): { api: Api; seen: Seen[] } {
  const seen: Seen[] = [];
  const impl = (async (input: RequestInfo | URL, init?: RequestInit) => {
    const headers = new Headers(init?.headers);
    seen.push({
      method: init?.method ?? "GET",
      url: String(input),
      body: typeof init?.body === "string" ? JSON.parse(init.body) : null,
      auth: headers.get("Authorization"),
    });
    return new Response(JSON.stringify(answer), { status, headers: { "Content-Type": "application/json" } });
  }) as typeof fetch;
  return { api: new Api("http://kefu.test", "tok", impl), seen };
}

describe("typed endpoints", () => {
  it("reads one conversation by its escaped id", async () => {
    const { api, seen } = fake(200, { conversation: { id: "c/1" } });
    expect(await getConversation(api, "c/1")).toEqual({ id: "c/1" });
    expect(seen).toEqual([{ method: "GET", url: "http://kefu.test/api/v1/conversations/c%2F1", body: null, auth: "Bearer tok" }]);
  });

  it("pages messages with only the bounds given", async () => {
    const { api, seen } = fake(200, { messages: [{ seq: 3 }] });
    expect(await getMessages(api, "c1", { after: 2, limit: 50 })).toEqual([{ seq: 3 }]);
    expect(seen[0].url).toBe("http://kefu.test/api/v1/conversations/c1/messages?after=2&limit=50");
  });

  it("reads and updates a ticket", async () => {
    const { api, seen } = fake(200, { ticket: { number: 7, status: "solved" } });
    expect(await getTicket(api, 7)).toEqual({ number: 7, status: "solved" });
    expect(await updateTicket(api, 7, { status: "solved", assignee_id: null })).toEqual({ number: 7, status: "solved" });
    expect(seen[1]).toMatchObject({ method: "PATCH", url: "http://kefu.test/api/v1/tickets/7", body: { status: "solved", assignee_id: null } });
  });

  it("turns the error body into an ApiError with its code and field", async () => {
    const { api } = fake(400, { error: { code: "invalid_request", message: "bad status", field: "status" } });
    const err = await updateTicket(api, 7, { status: "open" }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ApiError);
    expect(err).toMatchObject({ status: 400, code: "invalid_request", field: "status" });
  });
});
