// The composer's canned-reply popup: when it opens (a `/` at the very start
// of the draft), what it searches for, the keyboard's highlighted row, and
// how the chosen (rendered) reply replaces the `/shortcut` that was typed.

import type { CannedReply } from "../../lib/types";
export type { CannedReply };

/** The search text when the draft asks for canned replies (`/ref` → "ref"), else null. */
export function cannedQuery(draft: string): string | null {
  const m = draft.match(/^\/([^\s/]*)$/u);
  return m ? m[1] : null;
}

/** The highlighted row after an arrow key: wraps around both ends. */
export function moveHighlight(index: number, delta: number, count: number): number {
  if (count <= 0) return 0;
  return (((index + delta) % count) + count) % count;
}

/** The draft after choosing a reply: the `/query` gives way to the rendered text. */
export function insertCanned(draft: string, rendered: string): string {
  return cannedQuery(draft) !== null ? rendered : draft + rendered;
}

/**
 * Orders replies as the server does (shortcut-prefix matches first, then by
 * shortcut) and keeps those matching `q` — used to filter a fetched list
 * while the agent keeps typing, before the next answer arrives.
 */
export function rankCanned(list: readonly CannedReply[], q: string): CannedReply[] {
  const needle = q.replace(/^\//, "").toLowerCase();
  const prefix: CannedReply[] = [];
  const other: CannedReply[] = [];
  for (const r of list) {
    const shortcut = r.shortcut.toLowerCase();
    if (shortcut.startsWith(needle)) prefix.push(r);
    else if (!needle || r.title.toLowerCase().includes(needle) || r.body.toLowerCase().includes(needle)) other.push(r);
  }
  const byShortcut = (a: CannedReply, b: CannedReply) => a.shortcut.localeCompare(b.shortcut);
  return [...prefix.sort(byShortcut), ...other.sort(byShortcut)];
}
