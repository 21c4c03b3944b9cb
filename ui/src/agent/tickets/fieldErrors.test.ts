import { describe, expect, it } from "vitest";
import { ApiError } from "../../lib/api";
import { fieldErrors, fieldFor, fieldOf } from "./fieldErrors";

describe("fieldOf", () => {
  const fields = ["subject", "description", "requester_email", "tags", "business_hours", "business_hours.timezone", "business_hours.weekly"];
  it("picks the field the message starts with, the longest first", () => {
    expect(fieldOf("requester_email is not an email address", fields)).toBe("requester_email");
    expect(fieldOf('business_hours.timezone: unknown time zone "X"', fields)).toBe("business_hours.timezone");
    expect(fieldOf("business_hours.weekly.mon: bad", fields)).toBe("business_hours.weekly");
  });
  it("finds a field mentioned as a whole word, else the form", () => {
    expect(fieldOf("at most 20 tags", fields)).toBe("tags");
    expect(fieldOf("subjects are hard", fields)).toBe("");
    expect(fieldOf("assignee not found", fields)).toBe("");
  });
  it("maps a thrown ApiError", () => {
    expect(fieldErrors(new ApiError(400, "bad_request", "subject must not be empty"), fields)).toEqual({ subject: "subject must not be empty" });
  });
});

describe("the server's field", () => {
  const fields = ["subject", "tags", "business_hours", "business_hours.weekly"];
  it("is used before the message text", () => {
    expect(fieldErrors(new ApiError(400, "bad_request", "at most 20 things", "tags"), fields)).toEqual({ tags: "at most 20 things" });
    expect(fieldErrors(new ApiError(400, "bad_request", "subject is odd", "nothing_here"), fields)).toEqual({ "": "subject is odd" });
  });
  it("maps a nested path to the control that holds it", () => {
    expect(fieldFor("business_hours.weekly.mon", fields)).toBe("business_hours.weekly");
    expect(fieldFor("business_hours.timezone", fields)).toBe("business_hours");
    expect(fieldFor("tags[2]", fields)).toBe("tags");
    expect(fieldFor("subjects", fields)).toBe("");
  });
});
