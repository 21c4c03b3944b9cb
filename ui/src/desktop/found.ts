// The shop hosts found over mDNS (the shell's `lan_discover`), as the join
// screen lists them. A hint, never trust: anyone on the network can
// announce a shop; picking one only fills in its pairing link, and the
// code both screens show is what the person checks.

/** One host as the shell reports it (src-tauri/src/lan.rs, `FoundHost`). */
export interface FoundHost {
  shop: string | null;
  address: string;
  addresses: string[];
  device_id: string;
  short_id: string;
  term: number;
  link: string;
}

/** How often the join screen asks the shell for the list. */
export const FOUND_REFRESH_MS = 3000;

/** The list as shown: at most `max` entries, stable order (the shell's), and
 * a shop name that is what was announced or, if none, the short device ID. */
export function foundRows(hosts: FoundHost[], unnamed: string, max = 20) {
  return hosts.slice(0, max).map((host) => ({
    key: `${host.device_id}|${host.address}`,
    title: host.shop ?? `${unnamed} (${host.short_id})`,
    address: host.address,
    deviceId: host.device_id,
    target: host.link,
  }));
}

/** Whether the list should be refreshed in this phase of joining: only
 * while the person is choosing (not while a pairing runs). */
export function looking(phase: string): boolean {
  return phase === "idle" || phase === "failed";
}
