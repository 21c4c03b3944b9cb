// Formatting of times, durations and sizes for the UI, in the UI's locale.

import type { Locale } from "./i18n";

/** "3 s", "4 min", "2 h 5 min", "3 d": a wait or an age, coarse on purpose. */
export function formatDuration(ms: number, locale: Locale): string {
  const zh = locale === "zh-CN";
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s < 60) return zh ? `${s} 秒` : `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return zh ? `${m} 分钟` : `${m}m`;
  const h = Math.floor(m / 60);
  if (h < 24) {
    const rest = m % 60;
    if (zh) return rest ? `${h} 小时 ${rest} 分钟` : `${h} 小时`;
    return rest ? `${h}h ${rest}m` : `${h}h`;
  }
  const d = Math.floor(h / 24);
  return zh ? `${d} 天` : `${d}d`;
}

/** A message time: "14:05" today, "Mon 14:05" this week, else a date. */
export function formatTime(at: number, locale: Locale, now = Date.now()): string {
  const date = new Date(at);
  const today = new Date(now);
  const sameDay = date.toDateString() === today.toDateString();
  const time = date.toLocaleTimeString(locale, { hour: "2-digit", minute: "2-digit" });
  if (sameDay) return time;
  if (now - at < 6 * 24 * 3600 * 1000 && now >= at) {
    return `${date.toLocaleDateString(locale, { weekday: "short" })} ${time}`;
  }
  return `${date.toLocaleDateString(locale, { year: "numeric", month: "short", day: "numeric" })} ${time}`;
}

/** A full date and time, for tooltips and history. */
export function formatDateTime(at: number, locale: Locale): string {
  return new Date(at).toLocaleString(locale, {
    year: "numeric",
    month: "short",
    day: "numeric",
    hour: "2-digit",
    minute: "2-digit",
  });
}

export function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}

/** The first line of `text`, at most `max` characters (for previews and subjects). */
export function firstLine(text: string, max = 80): string {
  const line = text.trim().split(/\r?\n/, 1)[0] ?? "";
  const chars = Array.from(line);
  return chars.length > max ? chars.slice(0, max - 1).join("") + "…" : line;
}

/** The unread count in a page title: "(3) Kefu". */
export function titleWithCount(base: string, unread: number): string {
  if (unread <= 0) return base;
  return `(${unread > 99 ? "99+" : unread}) ${base}`;
}
