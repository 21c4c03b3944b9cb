// Where the visitor's token lives: localStorage of the Kefu origin (the
// iframe's), one entry per app. Browsers may refuse storage to a third-party
// frame; the chat then still works for this page view, from memory.

export interface StoredSession {
  token: string;
  visitor_id: string;
  conversation_id: string;
}

const memory = new Map<string, string>();

export function storageKey(appKey: string): string {
  return `kefu.v1.visitor.${appKey}`;
}

function store(): Pick<Storage, "getItem" | "setItem" | "removeItem"> {
  try {
    const s = window.localStorage;
    const probe = "kefu.probe";
    s.setItem(probe, "1");
    s.removeItem(probe);
    return s;
  } catch {
    return {
      getItem: (k) => memory.get(k) ?? null,
      setItem: (k, v) => void memory.set(k, v),
      removeItem: (k) => void memory.delete(k),
    };
  }
}

export function loadSession(appKey: string): StoredSession | null {
  try {
    const v = JSON.parse(store().getItem(storageKey(appKey)) ?? "null") as Partial<StoredSession> | null;
    if (v && typeof v.token === "string" && typeof v.visitor_id === "string" && typeof v.conversation_id === "string") {
      return { token: v.token, visitor_id: v.visitor_id, conversation_id: v.conversation_id };
    }
  } catch {
    /* a broken entry is no entry */
  }
  return null;
}

export function saveSession(appKey: string, s: StoredSession) {
  store().setItem(storageKey(appKey), JSON.stringify(s));
}

export function forgetSession(appKey: string) {
  store().removeItem(storageKey(appKey));
}
