// Business hours as the editor holds them (every day present, an on/off
// switch) and as the API stores them (closed days left out, `null` = always
// open). Conversion both ways is pure and tested.

export const DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"] as const;
export type Day = (typeof DAYS)[number];

export interface Interval {
  start: string;
  end: string;
}

export interface BusinessHours {
  timezone: string;
  weekly: Partial<Record<Day, Interval[]>>;
  closed_dates: string[];
}

export interface HoursForm {
  /** false = always open (`business_hours: null`). */
  enabled: boolean;
  timezone: string;
  weekly: Record<Day, Interval[]>;
  closedDates: string[];
}

/** The browser's own zone: a sensible default for a new schedule. */
export function localTimeZone(): string {
  try {
    return Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
  } catch {
    return "UTC";
  }
}

/** Every zone the browser knows, for the picker (the server checks the name anyway). */
export function timeZones(): string[] {
  const intl = Intl as unknown as { supportedValuesOf?: (key: string) => string[] };
  try {
    const zones = intl.supportedValuesOf?.("timeZone") ?? [];
    return zones.includes("UTC") ? zones : ["UTC", ...zones];
  } catch {
    return ["UTC"];
  }
}

function emptyWeek(): Record<Day, Interval[]> {
  return { mon: [], tue: [], wed: [], thu: [], fri: [], sat: [], sun: [] };
}

/** Office hours most shops start from: weekdays 09:00–18:00. */
export function defaultWeek(): Record<Day, Interval[]> {
  const week = emptyWeek();
  for (const day of ["mon", "tue", "wed", "thu", "fri"] as const) week[day] = [{ start: "09:00", end: "18:00" }];
  return week;
}

export function hoursToForm(hours: BusinessHours | null | undefined, fallbackZone = "UTC"): HoursForm {
  if (!hours) return { enabled: false, timezone: fallbackZone, weekly: defaultWeek(), closedDates: [] };
  const weekly = emptyWeek();
  // A time picker cannot say 24:00: the editor shows midnight as 00:00.
  for (const day of DAYS) weekly[day] = (hours.weekly[day] ?? []).map((i) => ({ start: i.start, end: i.end === "24:00" ? "00:00" : i.end }));
  return { enabled: true, timezone: hours.timezone, weekly, closedDates: [...hours.closed_dates] };
}

export function formToHours(form: HoursForm): BusinessHours | null {
  if (!form.enabled) return null;
  const weekly: Partial<Record<Day, Interval[]>> = {};
  for (const day of DAYS) {
    const intervals = form.weekly[day]
      .filter((i) => i.start && i.end)
      .map((i) => ({ start: i.start, end: i.end === "00:00" ? "24:00" : i.end }));
    if (intervals.length) weekly[day] = intervals;
  }
  const dates = [...new Set(form.closedDates.map((d) => d.trim()).filter(Boolean))].sort();
  return { timezone: form.timezone.trim(), weekly, closed_dates: dates };
}

/** A next interval for a day: after the last one, an hour long, else 09:00–18:00. */
export function nextInterval(intervals: readonly Interval[]): Interval {
  const last = intervals[intervals.length - 1];
  if (!last) return { start: "09:00", end: "18:00" };
  const [h, m] = last.end.split(":").map(Number);
  const startMin = Math.min(h * 60 + m + 60, 23 * 60);
  const endMin = Math.min(startMin + 60, 24 * 60);
  const fmt = (x: number) => `${String(Math.floor(x / 60)).padStart(2, "0")}:${String(x % 60).padStart(2, "0")}`;
  return { start: fmt(startMin), end: fmt(endMin) };
}
