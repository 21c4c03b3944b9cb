// window.Kefu.on(): the page's listeners, each with its own unsubscribe. A
// listener that throws is reported and does not stop the others.

import type { PageMessage } from "./protocol";

export interface Listeners {
  message: (message: PageMessage) => void;
  open: () => void;
  close: () => void;
  ready: () => void;
  unread: (count: number) => void;
}
export type KefuEvent = keyof Listeners;

const EVENTS: readonly string[] = ["message", "open", "close", "ready", "unread"];

export class Emitter {
  private readonly map = new Map<string, Set<(...args: unknown[]) => void>>();

  on<K extends KefuEvent>(event: K, fn: Listeners[K]): () => void {
    if (!EVENTS.includes(event) || typeof fn !== "function") return () => {};
    const set = this.map.get(event) ?? new Set();
    this.map.set(event, set);
    // Wrapped so the same function added twice is two subscriptions.
    const entry = (...args: unknown[]) => (fn as (...a: unknown[]) => void)(...args);
    set.add(entry);
    return () => {
      set.delete(entry);
    };
  }

  emit(event: KefuEvent, ...args: unknown[]) {
    for (const fn of [...(this.map.get(event) ?? [])]) {
      try {
        fn(...args);
      } catch (err) {
        console.error("Kefu listener failed:", err);
      }
    }
  }
}
