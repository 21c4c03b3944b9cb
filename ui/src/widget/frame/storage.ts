// Where the visitor's token lives: localStorage of the Kefu origin (the
// iframe's), one entry per app. Browsers that block storage for third-party
// frames (private windows, strict tracking protection) throw on access; the
// frame then asks the page to keep the token in its own storage instead
// (docs/WIDGET.md, "session" event), as Chatwoot and Crisp do.

export function storageKey(appKey: string): string {
  return `kefu.v1.visitor.${appKey}`;
}

/** The frame's own localStorage, or null when the browser refuses it. */
export function ownStorage(): Storage | null {
  try {
    const s = window.localStorage;
    s.setItem("kefu.probe", "1");
    s.removeItem("kefu.probe");
    return s;
  } catch {
    return null;
  }
}

export function loadToken(s: Storage, appKey: string): string | null {
  try {
    return s.getItem(storageKey(appKey));
  } catch {
    return null;
  }
}

export function saveToken(s: Storage, appKey: string, token: string | null) {
  try {
    if (token) s.setItem(storageKey(appKey), token);
    else s.removeItem(storageKey(appKey));
  } catch {
    /* full or revoked: this page view still works */
  }
}
