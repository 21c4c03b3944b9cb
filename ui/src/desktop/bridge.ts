// The desktop shell's IPC, used only inside the Tauri window (src-tauri/).
// We call Tauri's internal `invoke` directly instead of adding @tauri-apps/api:
// the shell exposes a handful of commands and nothing else (see
// src-tauri/capabilities/main-window.json).
import type { Locale } from "../lib/i18n";

interface TauriInternals {
  invoke<T>(cmd: string, args?: Record<string, unknown>): Promise<T>;
}

export function isDesktop(): boolean {
  return (globalThis as { __KEFU_DESKTOP__?: boolean }).__KEFU_DESKTOP__ === true &&
    "__TAURI_INTERNALS__" in globalThis;
}

export function invoke<T>(cmd: string, args?: Record<string, unknown>): Promise<T> {
  const internals = (globalThis as unknown as { __TAURI_INTERNALS__?: TauriInternals }).__TAURI_INTERNALS__;
  if (!internals) return Promise.reject(new Error("not in the desktop app"));
  return internals.invoke<T>(cmd, args);
}

export interface NotifyPrefs {
  queue: boolean;
  messages: boolean;
  tickets: boolean;
}

export interface Prefs {
  port: number;
  durability: "os" | "fsync";
  close_to_tray: boolean;
  remember_me: boolean;
  autostart: boolean;
  notify: NotifyPrefs;
  lan?: { host_bind: string | null; mdns: boolean };
}

export type ServerStatus =
  | { state: "running"; api_base: string }
  | { state: "port_in_use"; port: number; suggested: number | null }
  | { state: "failed"; message: string };

export interface DesktopConfig {
  status: ServerStatus;
  needs_setup: boolean;
  prefs: Prefs;
  version: string;
  data_dir: string;
  lan_role: LanRole;
}

export type LanRole = "solo" | "host" | "peer";

/** The peer's link to the host (GET /api/v1/lan/link, API.md §2.16). */
export interface LinkStatus {
  state: "connecting" | "connected" | "reconnecting" | "unreachable" | "refused";
  host: string;
  host_device_id: string;
  host_short_id: string;
  term: number | null;
  refusal: string | null;
  message: string | null;
}

export type Joining =
  | { phase: "idle" }
  | { phase: "connecting"; host: string }
  | { phase: "waiting"; host: string; host_device_id: string; host_short_id: string; code: string }
  | { phase: "joined"; host: string }
  | { phase: "failed"; message: string };

export interface LanInfo {
  role: LanRole;
  device_id: string;
  short_id: string;
  host_bind: string | null;
  listening: string | null;
  mdns: boolean;
  shop_name: string | null;
  link: LinkStatus | null;
  joining: Joining;
  default_bind: string;
}

export type EventKind = "queue" | "message" | "ticket";

export interface DesktopEvent {
  kind: EventKind;
  title: string;
  body: string;
  target: string;
}

import type { FoundHost } from "./found";

/** Settings → Backup (src-tauri/src/backup.rs, docs/DESKTOP.md "Backups"). */
export interface BackupPrefs {
  dir: string | null;
  scheduled: boolean;
  interval_minutes: number;
  keep: number;
}

export interface BackupEntry {
  path: string;
  name: string;
  created_at: string;
  created_at_ms: number;
  bytes: number;
  conversations: number;
  messages: number;
  kefu_version: string;
}

export interface BackupSummary {
  path: string;
  created_at_ms: number;
  duration_secs: number;
  bytes: number;
  messages: number;
}

export interface LastBackup {
  at_ms: number;
  ok: boolean;
  path: string;
  bytes: number;
  duration_secs: number;
  error: string | null;
}

export interface PendingRestore {
  from: string;
  backup_created_at: string;
  requested_at_ms: number;
}

export interface RestoreOutcome {
  from: string;
  backup_created_at: string;
  at_ms: number;
  ok: boolean;
  previous: string | null;
  error: string | null;
}

export interface BackupInfo {
  prefs: BackupPrefs;
  data_dir: string;
  backups: BackupEntry[];
  last: LastBackup | null;
  pending: PendingRestore | null;
  restored: RestoreOutcome | null;
}

/** An update the shop's server offers (Settings → Updates). */
export interface FoundUpdate {
  version: string;
  current_version: string;
  notes: string | null;
  date: string | null;
}

export interface UpdateInfo {
  url: string | null;
  check_on_start: boolean;
  key_id: string | null;
  key_source: "settings" | "build" | null;
  key_error: string | null;
  current_version: string;
  pending: FoundUpdate | null;
  installable: boolean;
  allow_http: boolean;
}

/** How an update command fails: a stable code and the detail. */
export interface UpdateError {
  code: string;
  message: string;
}

export const desktop = {
  config: () => invoke<DesktopConfig>("desktop_config"),
  setupOwner: (owner: { username: string; password: string; display_name: string | null }) =>
    invoke<void>("setup_owner", { owner }),
  usePort: (port: number) => invoke<void>("use_port", { port }),
  tokenGet: () => invoke<string | null>("token_get"),
  tokenSet: (token: string) => invoke<void>("token_set", { token }),
  tokenClear: () => invoke<void>("token_clear"),
  setPrefs: (prefs: Prefs) => invoke<void>("set_prefs", { prefs }),
  reportStatus: (status: string) => invoke<void>("report_status", { status }),
  reportUnread: (count: number) => invoke<void>("report_unread", { count }),
  notify: (event: DesktopEvent, locale: Locale) => invoke<string>("notify", { event, zh: locale === "zh-CN" }),
  openExternal: (url: string) => invoke<void>("open_external", { url }),
  lanInfo: () => invoke<LanInfo>("lan_info"),
  /** Shop hosts found over mDNS; `false` stops looking (found.ts). */
  lanDiscover: (active: boolean) => invoke<FoundHost[]>("lan_discover", { active }),
  lanHost: (bind: string, mdns: boolean, shopName: string | null) =>
    invoke<void>("lan_host", { bind, mdns, shopName }),
  lanStopHosting: () => invoke<void>("lan_stop_hosting"),
  lanJoin: (target: string, name: string | null) => invoke<Joining>("lan_join", { target, name }),
  lanJoinCancel: () => invoke<void>("lan_join_cancel"),
  lanLeave: () => invoke<void>("lan_leave"),
  // Settings → Backup: admin-only; each takes the session token.
  backupInfo: (token: string) => invoke<BackupInfo>("backup_info", { token }),
  /** Saves the folder and schedule; true when the server restarted (reload). */
  backupSettings: (token: string, prefs: { dir: string; scheduled: boolean; intervalMinutes: number; keep: number }) =>
    invoke<boolean>("backup_settings", { token, ...prefs }),
  backupNow: (token: string) => invoke<BackupSummary>("backup_now", { token }),
  backupRestore: (token: string, from: string) => invoke<PendingRestore>("backup_restore", { token, from }),
  backupRestoreCancel: (token: string) => invoke<void>("backup_restore_cancel", { token }),
  updateInfo: () => invoke<UpdateInfo>("update_info"),
  updateConfigure: (url: string | null, checkOnStart: boolean) =>
    invoke<UpdateInfo>("update_configure", { url, checkOnStart }),
  updateCheck: () => invoke<FoundUpdate | null>("update_check"),
  updateInstall: (version: string) => invoke<void>("update_install", { version }),
};
