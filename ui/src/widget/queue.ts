// Calls the page makes before the iframe listens: kept in order, and turned
// into one `init` (who the visitor is, the page, the locale) plus the
// commands that are about showing the panel. The frame so starts one session
// for the right user instead of an anonymous one followed by a switch.

import type { Command, PageInfo } from "./protocol";

export function foldInit(queued: readonly Command[], page: PageInfo, open: boolean, token: string | null = null): Command[] {
  const init: Extract<Command, { type: "init" }> = {
    type: "init",
    page,
    locale: null,
    user: null,
    attributes: null,
    reset: false,
    open,
    token,
  };
  for (const c of queued) {
    switch (c.type) {
      case "setUser":
        init.user = c.user;
        break;
      case "setAttributes":
        init.attributes = { ...(init.attributes ?? {}), ...c.attributes };
        break;
      case "setLocale":
        init.locale = c.locale;
        break;
      case "page":
        init.page = c.page;
        break;
      case "reset":
        init.reset = true;
        init.user = null;
        init.attributes = null;
        init.token = null;
        break;
      case "visibility":
        init.open = c.open;
        break;
      case "init":
        break;
    }
  }
  return [init];
}

/** Holds commands until `flush` is given a sender; afterwards sends at once. */
export class CommandQueue {
  private queued: Command[] = [];
  private sender: ((c: Command) => void) | null = null;

  push(c: Command) {
    if (this.sender) this.sender(c);
    else this.queued.push(c);
  }

  get length(): number {
    return this.queued.length;
  }

  /** Sends the folded init, then lets later commands through directly. */
  flush(send: (c: Command) => void, page: PageInfo, open: boolean, token: string | null = null) {
    const all = foldInit(this.queued, page, open, token);
    this.queued = [];
    for (const c of all) send(c);
    this.sender = send;
  }

  /** The frame reloaded (or was replaced): queue again until it says loaded. */
  pause() {
    this.sender = null;
  }
}
