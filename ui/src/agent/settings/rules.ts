// Routing rules between the editor's text fields and the API's object:
// keywords one per line or comma-separated, attributes as `key=value`
// lines (values read as JSON when they are numbers, true/false or null).

export interface Rule {
  id: string;
  name: string;
  position: number;
  enabled: boolean;
  app_id: string | null;
  keywords: string[];
  attributes: Record<string, string | number | boolean | null>;
  team_id: string | null;
  agent_id: string | null;
  created_at: number;
  /** [ext] Kefu Assist: the predicted intent the chat must have (docs/API.md 2.20). */
  intent?: string | null;
  intent_confidence?: number | null;
}

export interface RuleForm {
  name: string;
  enabled: boolean;
  appId: string;
  keywords: string;
  attributes: string;
  /** "team:ID" or "agent:ID". */
  target: string;
  /** Intent name; empty: no intent condition. */
  intent: string;
  intentConfidence: number;
  /** The rule had an intent condition (emptying `intent` removes it). */
  hadIntent: boolean;
}

export function ruleToForm(rule: Rule | null): RuleForm {
  if (!rule) return { name: "", enabled: true, appId: "", keywords: "", attributes: "", target: "", intent: "", intentConfidence: 0.6, hadIntent: false };
  return {
    name: rule.name,
    enabled: rule.enabled,
    appId: rule.app_id ?? "",
    keywords: rule.keywords.join(", "),
    attributes: Object.entries(rule.attributes)
      .map(([k, v]) => `${k}=${typeof v === "string" ? v : JSON.stringify(v)}`)
      .join("\n"),
    target: rule.team_id ? `team:${rule.team_id}` : rule.agent_id ? `agent:${rule.agent_id}` : "",
    intent: rule.intent ?? "",
    intentConfidence: rule.intent_confidence ?? 0.6,
    hadIntent: !!rule.intent,
  };
}

export function parseKeywords(text: string): string[] {
  const out: string[] = [];
  for (const part of text.split(/[\n,，]/)) {
    const k = part.trim();
    if (k && !out.includes(k)) out.push(k);
  }
  return out;
}

/** `key=value` lines → attributes; a line without `=` is an error (its number, from 1). */
export function parseAttributes(text: string): { attributes: Record<string, string | number | boolean | null>; badLine: number | null } {
  const attributes: Record<string, string | number | boolean | null> = {};
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i].trim();
    if (!line) continue;
    const eq = line.indexOf("=");
    if (eq <= 0) return { attributes, badLine: i + 1 };
    const key = line.slice(0, eq).trim();
    const raw = line.slice(eq + 1).trim();
    let value: string | number | boolean | null = raw;
    if (raw === "true") value = true;
    else if (raw === "false") value = false;
    else if (raw === "null") value = null;
    else if (/^-?\d+(\.\d+)?$/.test(raw)) value = Number(raw);
    else if (/^".*"$/.test(raw)) value = raw.slice(1, -1);
    attributes[key] = value;
  }
  return { attributes, badLine: null };
}

/** The create/PATCH body for a form (the caller checks `badLine` first). */
export function formToBody(form: RuleForm): Record<string, unknown> {
  const body: Record<string, unknown> = {
    name: form.name.trim(),
    enabled: form.enabled,
    app_id: form.appId || null,
    keywords: parseKeywords(form.keywords),
    attributes: parseAttributes(form.attributes).attributes,
  };
  const [kind, id] = form.target.split(":");
  if (kind === "team" && id) body.team_id = id;
  if (kind === "agent" && id) body.agent_id = id;
  const intent = form.intent.trim();
  if (intent) {
    body.intent = intent;
    body.intent_confidence = form.intentConfidence;
  } else if (form.hadIntent) {
    body.intent = null;
  }
  return body;
}

/** The ids in their new order after moving one up (-1) or down (+1). */
export function moved(ids: readonly string[], id: string, by: -1 | 1): string[] {
  const out = [...ids];
  const i = out.indexOf(id);
  const j = i + by;
  if (i < 0 || j < 0 || j >= out.length) return out;
  [out[i], out[j]] = [out[j], out[i]];
  return out;
}
