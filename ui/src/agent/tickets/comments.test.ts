import { describe, expect, it } from "vitest";
import type { Comment } from "../../lib/types";
import { mergeComments } from "./comments";

const c = (id: string, at: number, body = id): Comment => ({
  id, ticket_number: 1, author_id: "A", body, public: false, client_msg_id: null, message_seq: null, created_at: at,
});

describe("mergeComments", () => {
  it("dedupes by id, keeps the newest copy and orders by time then id", () => {
    const out = mergeComments([c("b", 2), c("a", 1)], [c("b", 2, "edited"), c("c", 2), c("0", 3)]);
    expect(out.map((x) => x.id)).toEqual(["a", "b", "c", "0"]);
    expect(out[1].body).toBe("edited");
  });
});
