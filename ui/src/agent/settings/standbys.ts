// Settings → LAN on a host: which approved computers keep a copy of the
// shop (standbys), how far behind each is, and handing the shop to one
// (docs/LAN.md "Replication and fencing", API.md §2.22–§2.23). Pure logic,
// so that it is tested without a browser; `LanStandbys.svelte` shows it.

/** One standby as `GET /api/v1/lan/status` lists it (API.md §2.22). */
export interface StandbyStatus {
  device_id: string;
  name: string;
  connected: boolean;
  applied_seq: number | null;
  lag_seq: number | null;
  lag_seconds: number | null;
  full_syncs: number;
  last_full_sync_seconds?: number | null;
}

/** What the tab needs of an approved device (`GET /api/v1/lan/devices`). */
export interface DeviceLike {
  device_id: string;
  short_id: string;
  name: string;
  status: string;
  address: string | null;
}

/** How a standby is doing, for its badge and its words. */
export type StandbyState = "waiting" | "offline" | "caught_up" | "behind";

/** One approved device with its standby switch and progress. */
export interface StandbyRow {
  device: DeviceLike;
  /** The admin made it a standby (it is in `status.standbys`). */
  standby: boolean;
  progress: StandbyStatus | null;
  state: StandbyState | null;
}

/** How far behind counts as "behind" rather than "caught up" in seconds:
 * the standby asks every 50 ms, so a few hundred ms of lag is normal. */
export const BEHIND_AFTER_SECONDS = 2;

export function standbyState(progress: StandbyStatus): StandbyState {
  if (progress.applied_seq === null) return "waiting";
  if (!progress.connected) return "offline";
  if ((progress.lag_seq ?? 0) === 0 || (progress.lag_seconds ?? 0) < BEHIND_AFTER_SECONDS) return "caught_up";
  return "behind";
}

/** Every approved device, each with whether it is a standby and its progress. */
export function standbyRows(devices: DeviceLike[], standbys: StandbyStatus[] | null): StandbyRow[] {
  const byId = new Map((standbys ?? []).map((s) => [s.device_id, s]));
  return devices
    .filter((d) => d.status === "approved")
    .map((device) => {
      const progress = byId.get(device.device_id) ?? null;
      return { device, standby: progress !== null, progress, state: progress ? standbyState(progress) : null };
    });
}

/** Seconds as the tab shows them: "0.4 s", "12 s", "3 min", "2 h". */
export function formatSeconds(seconds: number): string {
  if (seconds < 10) return `${(Math.round(seconds * 10) / 10).toFixed(1)} s`;
  if (seconds < 120) return `${Math.round(seconds)} s`;
  if (seconds < 7200) return `${Math.round(seconds / 60)} min`;
  return `${Math.round(seconds / 3600)} h`;
}

/**
 * Where the standby will serve the shop once handed over: the address
 * the host last saw it at (an IP, from its pairing) with this host's LAN
 * port (a shop's computers use the same port), or `""` when not known.
 */
export function suggestedAddress(deviceAddress: string | null, listening: string | null): string {
  if (!deviceAddress || !listening) return "";
  const port = /:(\d+)$/.exec(listening)?.[1];
  if (!port) return "";
  // The device's address may carry a port already (IP:PORT, [v6]:PORT).
  let ip = deviceAddress;
  const bracketed = /^\[([^\]]+)\](?::\d+)?$/.exec(ip);
  if (bracketed) ip = bracketed[1];
  else if (/^[^:]+:\d+$/.test(ip)) ip = ip.slice(0, ip.lastIndexOf(":"));
  return ip.includes(":") ? `[${ip}]:${port}` : `${ip}:${port}`;
}

/** `HOST:PORT` as the server takes it (an empty field means none). */
export function checkAddress(text: string): "ok" | "empty" | "bad" {
  const value = text.trim();
  if (!value) return "empty";
  const match = /^(\[[0-9a-fA-F:.]+\]|[^\s:/[\]]+):(\d{1,5})$/.exec(value);
  if (!match) return "bad";
  const port = Number(match[2]);
  return port >= 1 && port <= 65535 ? "ok" : "bad";
}

/** What `POST /api/v1/lan/handover` answers (API.md §2.23). */
export interface HandoverOutcome {
  handed_over: boolean;
  successor: { device_id: string; address: string | null; term: number; old_term: number };
  pause_ms: number;
  drain_ms: number;
}

/** This computer's copy, on a peer: `GET /api/v1/lan/copy` (API.md §2.28). */
export interface LocalCopy {
  enabled: boolean;
  running: boolean;
  copy: boolean;
  applied_seq: number | null;
  host_seq: number | null;
  behind_seq: number | null;
  last_contact_ms: number | null;
  seconds_since_contact: number | null;
  full_syncs: number | null;
  host_term: number | null;
  last_error: string | null;
  host_reachable: boolean;
  can_take_over: boolean;
}

/** What `POST /api/v1/lan/copy/takeover` answers. */
export interface TakeOverOutcome {
  took_over: boolean;
  term: number;
  applied_seq: number;
  host_seq: number;
  behind_seq: number;
  last_contact_ms: number;
  seconds_since_contact: number;
  lan_bind: string | null;
}

/** How this computer's copy is doing, for its words. */
export type LocalCopyState = "off" | "starting" | "following" | "retrying" | "host_gone";

export function localCopyState(copy: LocalCopy): LocalCopyState {
  if (!copy.enabled) return "off";
  if (copy.can_take_over) return "host_gone";
  if (copy.last_error) return "retrying";
  if (!copy.copy || copy.applied_seq === null) return "starting";
  return "following";
}

/**
 * What may be missing after a take-over, in words' parameters: the log
 * entries the host had and the copy had not when the host was last heard
 * (a lower bound: the host may have accepted more after), and how long ago
 * that was.
 */
export function missingAfterTakeover(copy: Pick<LocalCopy, "behind_seq" | "seconds_since_contact">): {
  entries: number;
  since: string;
} {
  return {
    entries: copy.behind_seq ?? 0,
    since: formatSeconds(copy.seconds_since_contact ?? 0),
  };
}

/** A LAN address to host on: an IP literal with a port (what `lan_bind` takes). */
export function checkBind(text: string): boolean {
  const value = text.trim();
  const match = /^(\d{1,3}(?:\.\d{1,3}){3}|\[[0-9a-fA-F:.]+\]):(\d{1,5})$/.exec(value);
  if (!match) return false;
  if (!match[1].startsWith("[") && match[1].split(".").some((part) => Number(part) > 255)) return false;
  const port = Number(match[2]);
  return port >= 1 && port <= 65535;
}
