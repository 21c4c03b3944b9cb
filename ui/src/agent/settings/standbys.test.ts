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

describe("this computer's copy (a peer)", () => {
  const copy = (over: Partial<import("./standbys").LocalCopy>): import("./standbys").LocalCopy => ({
    enabled: true,
    running: true,
    copy: true,
    applied_seq: 50,
    host_seq: 50,
    behind_seq: 0,
    last_contact_ms: 0,
    seconds_since_contact: 0.1,
    full_syncs: 1,
    host_term: 2,
    last_error: null,
    host_reachable: true,
    can_take_over: false,
    ...over,
  });
  it("says off, starting, following, retrying, or that the host is gone", async () => {
    const { localCopyState } = await import("./standbys");
    expect(localCopyState(copy({ enabled: false, can_take_over: true }))).toBe("off");
    expect(localCopyState(copy({ copy: false, applied_seq: null }))).toBe("starting");
    expect(localCopyState(copy({}))).toBe("following");
    expect(localCopyState(copy({ last_error: "the host refused the tail (403 Forbidden)" }))).toBe("retrying");
    expect(localCopyState(copy({ host_reachable: false, can_take_over: true, last_error: "host not reached" }))).toBe("host_gone");
  });
  it("words what may be missing from how far behind it was when last heard", async () => {
    const { missingAfterTakeover } = await import("./standbys");
    expect(missingAfterTakeover({ behind_seq: 12, seconds_since_contact: 3.2 })).toEqual({ entries: 12, since: "3.2 s" });
    expect(missingAfterTakeover({ behind_seq: null, seconds_since_contact: null })).toEqual({ entries: 0, since: "0.0 s" });
  });
  it("takes an IP and port to host on", async () => {
    const { checkBind } = await import("./standbys");
    expect(checkBind("0.0.0.0:5339")).toBe(true);
    expect(checkBind(" 192.168.1.21:5339 ")).toBe(true);
    expect(checkBind("[::]:5339")).toBe(true);
    expect(checkBind("shop-pc:5339")).toBe(false);
    expect(checkBind("300.1.1.1:5339")).toBe(false);
    expect(checkBind("0.0.0.0")).toBe(false);
    expect(checkBind("0.0.0.0:0")).toBe(false);
  });
});
