// The frame's side of the postMessage contract: commands only from the
// parent window at the origin the loader named (and, where the browser tells
// us, the origin that really embeds us), events only to that origin.

import { acceptFromParent, wrap, type Command, type FrameEvent } from "../protocol";

function refused(data: unknown) {
  const type = (data as { type?: unknown } | null)?.type;
  console.warn(`Kefu: refused ${String(type)}: a field is missing, of the wrong type or too long (docs/WIDGET.md)`);
}

export interface Bridge {
  /** False when opened on its own (a direct link) or the parent is unknown. */
  readonly embedded: boolean;
  post(e: FrameEvent): void;
  listen(fn: (c: Command) => void): void;
}

/** The parent's origin if we trust it: as named, and equal to ancestorOrigins[0] where known. */
export function trustedParentOrigin(named: string | null, ancestors: ArrayLike<string> | undefined): string | null {
  if (!named) return null;
  if (ancestors && ancestors.length > 0 && ancestors[0] !== named) return null;
  return named;
}

export function createBridge(named: string | null): Bridge {
  const framed = window.parent !== window;
  const origin = framed ? trustedParentOrigin(named, location.ancestorOrigins) : null;
  return {
    embedded: origin !== null,
    post(e) {
      if (origin) window.parent.postMessage(wrap(e), origin);
    },
    listen(fn) {
      window.addEventListener("message", (event) => {
        const c = acceptFromParent(event, window.parent, origin);
        if (c) fn(c);
        else if (origin && event.source === window.parent && event.origin === origin) refused(event.data);
      });
    },
  };
}
