// Every chats/queue string exists in both languages.
import { describe, expect, it } from "vitest";
import { missingKeys } from "../../lib/i18n";
import { chats } from "./chats";

describe("chats strings", () => {
  it("has every key in both languages, and only chats.* / queue.* keys", () => {
    expect(missingKeys(chats)).toEqual([]);
    for (const key of Object.keys(chats.en)) expect(key).toMatch(/^(chats|queue)\./);
  });
});
