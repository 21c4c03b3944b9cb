// The agent's typing signal: on at once, repeats throttled, off when idle or sent.
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { TypingSignal } from "./typing";

describe("TypingSignal", () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  it("sends on at once, repeats at most every 2 s, and off after 3 s idle", () => {
    const sent: boolean[] = [];
    const signal = new TypingSignal((on) => sent.push(on));
    signal.input();
    vi.advanceTimersByTime(500);
    signal.input();
    vi.advanceTimersByTime(500);
    signal.input();
    expect(sent).toEqual([true]);
    vi.advanceTimersByTime(1000);
    signal.input();
    expect(sent).toEqual([true, true]);
    vi.advanceTimersByTime(2999);
    expect(sent).toEqual([true, true]);
    vi.advanceTimersByTime(1);
    expect(sent).toEqual([true, true, false]);
  });

  it("sends off on stop only when it was on", () => {
    const sent: boolean[] = [];
    const signal = new TypingSignal((on) => sent.push(on));
    signal.stop();
    expect(sent).toEqual([]);
    signal.input();
    signal.stop();
    signal.stop();
    expect(sent).toEqual([true, false]);
    vi.advanceTimersByTime(5000);
    expect(sent).toEqual([true, false]);
  });
});
