// Puts a server error next to the control it is about: the error body's
// `field` ("requester_email", "business_hours.weekly.mon") says which. For an
// error without one (an older server), the field named at the start of the
// message is used instead; either only chooses where to show the message —
// never what happened (that is `code`).
import { ApiError } from "../../lib/api";

export type FieldErrors = Record<string, string>;

/** The message to show for any thrown value. */
export function errorText(err: unknown): string {
  if (err instanceof ApiError) return err.message;
  if (err instanceof Error) return err.message;
  return String(err);
}

/**
 * The field among `fields` that `message` is about: the longest one the
 * message starts with (followed by a space, `:` or `.`), or that it mentions
 * as a whole word; `""` (a form-level error) if none.
 */
export function fieldOf(message: string, fields: readonly string[]): string {
  const byLength = [...fields].sort((a, b) => b.length - a.length);
  for (const field of byLength) {
    if (message.startsWith(field) && /^[\s:.[]|^$/.test(message.slice(field.length, field.length + 1))) return field;
  }
  for (const field of byLength) {
    const re = new RegExp(`(^|[^A-Za-z0-9_])${field.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}($|[^A-Za-z0-9_])`);
    if (re.test(message)) return field;
  }
  return "";
}

/**
 * The field among `fields` that the server's `field` is: itself, or the
 * longest one it is inside (`business_hours.weekly.mon` is in
 * `business_hours.weekly`, `tags[2]` in `tags`); `""` if none.
 */
export function fieldFor(field: string, fields: readonly string[]): string {
  const byLength = [...fields].sort((a, b) => b.length - a.length);
  return byLength.find((f) => field === f || field.startsWith(`${f}.`) || field.startsWith(`${f}[`)) ?? "";
}

/** `{field: message}` for an error thrown by a form's request. */
export function fieldErrors(err: unknown, fields: readonly string[]): FieldErrors {
  const message = errorText(err);
  if (err instanceof ApiError && err.field !== undefined) {
    return { [fieldFor(err.field, fields)]: message };
  }
  return { [fieldOf(message, fields)]: message };
}
