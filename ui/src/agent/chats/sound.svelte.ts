// The new-message chime: a short tone made with WebAudio (no asset to
// load), with an off switch the agent's browser remembers.

const KEY = "kefu.sound";

class Sound {
  enabled = $state(typeof localStorage === "undefined" || localStorage.getItem(KEY) !== "off");
  private ctx: AudioContext | null = null;
  private lastAt = 0;

  constructor() {
    // Browsers start audio suspended until the user does something on the
    // page (after a reload the agent may not have clicked yet): wake it then.
    if (typeof window === "undefined") return;
    const unlock = () => {
      this.context()?.resume().catch(() => {});
      window.removeEventListener("pointerdown", unlock);
      window.removeEventListener("keydown", unlock);
    };
    window.addEventListener("pointerdown", unlock);
    window.addEventListener("keydown", unlock);
  }

  private context(): AudioContext | null {
    if (this.ctx) return this.ctx;
    const Ctor = window.AudioContext ?? (window as unknown as { webkitAudioContext?: typeof AudioContext }).webkitAudioContext;
    if (!Ctor) return null;
    this.ctx = new Ctor();
    return this.ctx;
  }

  set(on: boolean) {
    this.enabled = on;
    localStorage.setItem(KEY, on ? "on" : "off");
  }

  /** Two soft notes; at most one chime a second, however many messages arrive. */
  play() {
    if (!this.enabled) return;
    const now = Date.now();
    if (now - this.lastAt < 1000) return;
    this.lastAt = now;
    try {
      const ctx = this.context();
      if (!ctx) return;
      if (ctx.state === "suspended") void ctx.resume();
      const start = ctx.currentTime;
      for (const [i, freq] of [880, 1320].entries()) {
        const osc = ctx.createOscillator();
        const gain = ctx.createGain();
        osc.type = "sine";
        osc.frequency.value = freq;
        const t0 = start + i * 0.12;
        gain.gain.setValueAtTime(0.0001, t0);
        gain.gain.exponentialRampToValueAtTime(0.15, t0 + 0.02);
        gain.gain.exponentialRampToValueAtTime(0.0001, t0 + 0.18);
        osc.connect(gain).connect(ctx.destination);
        osc.start(t0);
        osc.stop(t0 + 0.2);
      }
    } catch {
      // No audio (autoplay policy, no device): the title still counts.
    }
  }
}

export const sound = new Sound();
