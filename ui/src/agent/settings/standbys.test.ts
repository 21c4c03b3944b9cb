import { describe, expect, it } from "vitest";
import { checkAddress, formatSeconds, standbyRows, standbyState, suggestedAddress, type StandbyStatus } from "./standbys";

const device = (id: string, status = "approved", address: string | null = "192.168.1.21") => ({
  device_id: id,
  short_id: id.slice(0, 4),
  name: `PC ${id}`,
  status,
  address,
});

const progress = (over: Partial<StandbyStatus>): StandbyStatus => ({
  device_id: "A",
  name: "PC A",
  connected: true,
  applied_seq: 100,
  lag_seq: 0,
  lag_seconds: 0,
  full_syncs: 1,
  last_full_sync_seconds: 30,
  ...over,
});

describe("standby rows", () => {
  it("lists approved devices only, each with its switch on when it is a standby", () => {
    const rows = standbyRows([device("A"), device("B"), device("C", "pending"), device("D", "revoked")], [progress({ device_id: "A" })]);
    expect(rows.map((r) => [r.device.device_id, r.standby])).toEqual([
      ["A", true],
      ["B", false],
    ]);
    expect(rows[0].state).toBe("caught_up");
    expect(rows[1].progress).toBeNull();
    expect(rows[1].state).toBeNull();
  });
  it("reads a host that is not hosting (standbys null) as no standby", () => {
    expect(standbyRows([device("A")], null)).toEqual([{ device: device("A"), standby: false, progress: null, state: null }]);
  });
});

describe("standby state", () => {
  it("waits until the standby first asked", () => {
    expect(standbyState(progress({ applied_seq: null, lag_seq: null, lag_seconds: null, connected: false }))).toBe("waiting");
  });
  it("is offline when not asked lately, whatever its lag", () => {
    expect(standbyState(progress({ connected: false }))).toBe("offline");
    expect(standbyState(progress({ connected: false, lag_seq: 40, lag_seconds: 90 }))).toBe("offline");
  });
  it("counts a short lag as caught up and a long one as behind", () => {
    expect(standbyState(progress({ lag_seq: 0, lag_seconds: 0 }))).toBe("caught_up");
    expect(standbyState(progress({ lag_seq: 3, lag_seconds: 0.2 }))).toBe("caught_up");
    expect(standbyState(progress({ lag_seq: 3, lag_seconds: 2.5 }))).toBe("behind");
  });
});

describe("formatting", () => {
  it("words seconds by size", () => {
    expect(formatSeconds(0)).toBe("0.0 s");
    expect(formatSeconds(0.44)).toBe("0.4 s");
    expect(formatSeconds(12.4)).toBe("12 s");
    expect(formatSeconds(180)).toBe("3 min");
    expect(formatSeconds(7200)).toBe("2 h");
  });
});

describe("the handover's address", () => {
  it("puts the device's IP with this host's LAN port", () => {
    expect(suggestedAddress("192.168.1.21", "0.0.0.0:5339")).toBe("192.168.1.21:5339");
    expect(suggestedAddress("127.0.0.3:41000", "127.0.0.2:40001")).toBe("127.0.0.3:40001");
    expect(suggestedAddress("fe80::1", "[::]:5339")).toBe("[fe80::1]:5339");
    expect(suggestedAddress("[fe80::1]:1234", "[::]:5339")).toBe("[fe80::1]:5339");
  });
  it("suggests nothing when it knows nothing", () => {
    expect(suggestedAddress(null, "0.0.0.0:5339")).toBe("");
    expect(suggestedAddress("192.168.1.21", null)).toBe("");
    expect(suggestedAddress("192.168.1.21", "nonsense")).toBe("");
  });
  it("checks HOST:PORT before asking the server", () => {
    expect(checkAddress("")).toBe("empty");
    expect(checkAddress("  ")).toBe("empty");
    expect(checkAddress("192.168.1.21:5339")).toBe("ok");
    expect(checkAddress(" shop-pc.local:5339 ")).toBe("ok");
    expect(checkAddress("[fe80::1]:5339")).toBe("ok");
    expect(checkAddress("192.168.1.21")).toBe("bad");
    expect(checkAddress("192.168.1.21:0")).toBe("bad");
    expect(checkAddress("192.168.1.21:70000")).toBe("bad");
    expect(checkAddress("http://x:1")).toBe("bad");
  });
});
