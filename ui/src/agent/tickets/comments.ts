// Comments merged from fetches and our own posts: one per id, oldest first.
import type { Comment } from "../../lib/types";

export function mergeComments(held: readonly Comment[], incoming: readonly Comment[]): Comment[] {
  const byId = new Map<string, Comment>();
  for (const c of held) byId.set(c.id, c);
  for (const c of incoming) byId.set(c.id, c);
  return [...byId.values()].sort((a, b) => a.created_at - b.created_at || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
}
