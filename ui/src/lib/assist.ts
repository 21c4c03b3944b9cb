// Kefu Assist's bot turns (docs/API.md 2.17): a `system` message whose
// `meta.assist` says what it is. Read defensively: meta is JSON the server
// wrote, but a field a client needs may be missing (an older server).

import type { Message } from "./types";

export interface AssistChoice {
  entry_id: string;
  question: string;
  confidence: number | null;
}

export interface AssistTurn {
  kind: "answer" | "choices" | "handoff";
  confidence: number | null;
  question: string | null;
  reason: string | null;
  choices: AssistChoice[];
}

const str = (v: unknown): string | null => (typeof v === "string" ? v : null);
const num = (v: unknown): number | null => (typeof v === "number" && Number.isFinite(v) ? v : null);

/** The bot turn a message is, or null for any other message. */
export function assistTurn(m: Message): AssistTurn | null {
  if (m.sender.type !== "system" || m.sender.id !== "assist") return null;
  const a = m.meta?.assist;
  if (!a || typeof a !== "object") return null;
  const meta = a as Record<string, unknown>;
  const kind = meta.kind;
  if (kind !== "answer" && kind !== "choices" && kind !== "handoff") return null;
  const choices = Array.isArray(meta.choices)
    ? meta.choices.flatMap((c) => {
        const o = (c ?? {}) as Record<string, unknown>;
        const id = str(o.entry_id);
        const question = str(o.question);
        return id && question ? [{ entry_id: id, question, confidence: num(o.confidence) }] : [];
      })
    : [];
  return { kind, confidence: num(meta.confidence), question: str(meta.question), reason: str(meta.reason), choices };
}

/** A confidence as a percentage for people ("83%"). */
export function percent(confidence: number | null): string {
  return confidence === null ? "—" : `${Math.round(confidence * 100)}%`;
}
