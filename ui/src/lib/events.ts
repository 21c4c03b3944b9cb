// System event lines ("Amy joined the conversation"), worded in the
// reader's language from the message's `meta` (docs/API.md, "Event lines").
// The server also stores an English `content` for API clients; it is what
// we show for an event we do not know or whose parameters are missing (a
// newer server, or a line stored before the names were in `meta`).
//
// The strings live here once and are merged into both the widget's and the
// workstation's dictionaries, so the two cannot drift apart. Names are
// parameters of a plain string: the caller renders the result as text.

import { defineDicts, type KeyOf, type Translate } from "./i18n";
import type { Message } from "./types";

export const eventDicts = defineDicts({
  en: {
    "event.assigned": "{agent} joined the conversation",
    "event.transferred_agent": "{by} transferred the conversation to {agent}",
    "event.transferred_team": "{by} transferred the conversation to the {team} team",
  },
  "zh-CN": {
    "event.assigned": "{agent} 已加入对话",
    "event.transferred_agent": "{by} 已将对话转接给 {agent}",
    "event.transferred_team": "{by} 已将对话转接给 {team} 团队",
  },
});

/** The event lines' keys; both dictionaries that merge `eventDicts` have them. */
export type EventKey = KeyOf<typeof eventDicts>;

/** A non-blank string parameter of `meta`, else null. */
function param(meta: Record<string, unknown>, key: string): string | null {
  const value = meta[key];
  return typeof value === "string" && value.trim() !== "" ? value : null;
}

/** The text of an `event` message in `t`'s language; `content` when it cannot be worded. */
export function eventText(message: Pick<Message, "content" | "meta">, t: Translate<EventKey>): string {
  const meta: Record<string, unknown> =
    message.meta && typeof message.meta === "object" && !Array.isArray(message.meta) ? message.meta : {};
  switch (meta.event) {
    case "assigned": {
      const agent = param(meta, "agent_name");
      if (agent) return t("event.assigned", { agent });
      break;
    }
    case "transferred": {
      const by = param(meta, "by_agent_name");
      const agent = param(meta, "to_agent_name");
      const team = param(meta, "to_team_name");
      if (by && agent && !team) return t("event.transferred_agent", { by, agent });
      if (by && team && !agent) return t("event.transferred_team", { by, team });
      break;
    }
  }
  return message.content;
}
