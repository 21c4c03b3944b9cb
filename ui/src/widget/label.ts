// The launcher's accessible name, in the page's widget language. The loader
// keeps its own three strings so that widget.js stays tiny.

import type { Locale } from "../lib/i18n";

export function launcherLabel(locale: Locale | null, open: boolean, unread: number): string {
  const zh = (locale ?? (typeof navigator !== "undefined" ? navigator.language : "en")).toLowerCase().startsWith("zh");
  const base = open ? (zh ? "关闭在线客服" : "Close chat") : zh ? "打开在线客服" : "Open chat";
  if (!unread || open) return base;
  return zh ? `${base}（${unread} 条未读）` : `${base} (${unread} unread)`;
}
