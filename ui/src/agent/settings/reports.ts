// The reports tab's date range: the last N whole days up to today, in the
// agent's own time zone, as `YYYY-MM-DD` (what /reports/* take).

function ymd(date: Date): string {
  const y = date.getFullYear();
  const m = String(date.getMonth() + 1).padStart(2, "0");
  const d = String(date.getDate()).padStart(2, "0");
  return `${y}-${m}-${d}`;
}

export function lastDays(days: number, now = new Date()): { from: string; to: string } {
  const from = new Date(now.getFullYear(), now.getMonth(), now.getDate() - (days - 1));
  return { from: ymd(from), to: ymd(now) };
}
