// Client message ids: `[A-Za-z0-9_-]`, 1–64 chars (docs/PROTOCOL.md). Random, so a
// resend after any disconnect carries the same id and the server dedupes it.

export function clientMsgId(prefix = "c"): string {
  const bytes = new Uint8Array(12);
  crypto.getRandomValues(bytes);
  let hex = "";
  for (const b of bytes) hex += b.toString(16).padStart(2, "0");
  return `${prefix}_${Date.now().toString(36)}_${hex}`;
}
