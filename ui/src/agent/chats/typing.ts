// The agent's typing signal for one conversation: `on` at the first
// keystroke and again at most every `repeatMs` while typing (the server
// coalesces repeats), `off` after `idleMs` without a keystroke or on send.

export interface Clock {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

const realClock: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (h) => clearTimeout(h as ReturnType<typeof setTimeout>),
};

export class TypingSignal {
  private on = false;
  private lastOnAt = -Infinity;
  private idle: unknown = null;

  constructor(
    private readonly send: (on: boolean) => void,
    private readonly idleMs = 3000,
    private readonly repeatMs = 2000,
    private readonly clock: Clock = realClock,
  ) {}

  /** A keystroke that changed the draft. */
  input() {
    const now = this.clock.now();
    if (!this.on || now - this.lastOnAt >= this.repeatMs) {
      this.on = true;
      this.lastOnAt = now;
      this.send(true);
    }
    if (this.idle !== null) this.clock.clearTimeout(this.idle);
    this.idle = this.clock.setTimeout(() => this.stop(), this.idleMs);
  }

  /** Sent, cleared, idle, or left the conversation. */
  stop() {
    if (this.idle !== null) this.clock.clearTimeout(this.idle);
    this.idle = null;
    if (!this.on) return;
    this.on = false;
    this.send(false);
  }
}
