// Ticket history in words ("Li changed the status from Open to Solved"),
// in the UI's language. Pure: it gets the translator and the agent names.
import { isKey, type Translate } from "../../lib/i18n";
import type { TicketEvent } from "../../lib/types";
import { dicts, type Key } from "../i18n";

type T = Translate<Key>;

export interface HistoryLine {
  actor: string;
  text: string;
}

function actorName(event: TicketEvent, t: T, agentName: (id: string) => string): string {
  if (event.actor.type === "system") return t("tickets.history.system");
  if (event.actor.type === "visitor") return t("tickets.history.visitor");
  return (event.actor.id && agentName(event.actor.id)) || t("tickets.history.someone");
}

function enumValue(prefix: string, value: unknown, t: T): string {
  if (typeof value !== "string") return t("tickets.history.empty");
  const key = `${prefix}.${value}`;
  // A value a newer server may add is shown as it is.
  return isKey(dicts, key) ? t(key) : value;
}

function assigneeValue(value: unknown, t: T, agentName: (id: string) => string): string {
  if (typeof value !== "string" || !value) return t("tickets.unassigned");
  return agentName(value) || t("tickets.history.someone");
}

function tagsValue(value: unknown, t: T): string {
  return Array.isArray(value) && value.length ? value.join(", ") : t("tickets.history.empty");
}

/** Short text for a history line: long subjects are cut. */
function quote(value: unknown, t: T): string {
  if (typeof value !== "string" || !value) return t("tickets.history.empty");
  const chars = Array.from(value);
  return chars.length > 60 ? `“${chars.slice(0, 59).join("")}…”` : `“${value}”`;
}

export function describeEvent(event: TicketEvent, t: T, agentName: (id: string) => string): HistoryLine {
  const actor = actorName(event, t, agentName);
  const p = (from: string, to: string) => ({ actor, from, to });
  switch (event.kind) {
    case "created": {
      const via = (event.to as { via?: string } | null)?.via;
      return { actor, text: t(via === "form" ? "tickets.history.created_form" : via === "chat" ? "tickets.history.created_chat" : "tickets.history.created", { actor }) };
    }
    case "status":
      return { actor, text: t("tickets.history.status", p(enumValue("tickets.status", event.from, t), enumValue("tickets.status", event.to, t))) };
    case "priority":
      return { actor, text: t("tickets.history.priority", p(enumValue("tickets.priority", event.from, t), enumValue("tickets.priority", event.to, t))) };
    case "assignee":
      return { actor, text: t("tickets.history.assignee", p(assigneeValue(event.from, t, agentName), assigneeValue(event.to, t, agentName))) };
    case "tags":
      return { actor, text: t("tickets.history.tags", p(tagsValue(event.from, t), tagsValue(event.to, t))) };
    case "subject":
      return { actor, text: t("tickets.history.subject", p(quote(event.from, t), quote(event.to, t))) };
    case "description":
      return { actor, text: t("tickets.history.description", { actor }) };
    case "comment": {
      const isPublic = (event.to as { public?: boolean } | null)?.public === true;
      return { actor, text: t(isPublic ? "tickets.history.reply" : "tickets.history.comment", { actor }) };
    }
    default:
      return { actor, text: t("tickets.history.other", { actor, kind: event.kind }) };
  }
}
