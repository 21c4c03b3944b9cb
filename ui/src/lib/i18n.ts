// Translation: dictionaries of plain strings with `{name}` placeholders, in
// English and Simplified Chinese. The locale follows the browser (or the OS,
// through the desktop's web view) unless the user picked one.

export type Locale = "en" | "zh-CN";
export const LOCALES: readonly Locale[] = ["en", "zh-CN"];

export type Dict = Record<string, string>;
export type Dicts = Record<Locale, Dict>;

/** The first of the preferred languages we speak; English otherwise. */
export function detectLocale(preferred: readonly string[]): Locale {
  for (const tag of preferred) {
    const lower = tag.toLowerCase();
    if (lower === "zh" || lower.startsWith("zh-") || lower.startsWith("zh_")) return "zh-CN";
    if (lower === "en" || lower.startsWith("en-")) return "en";
  }
  return "en";
}

/** Replaces `{key}` with params[key]; unknown placeholders stay as they are. */
export function interpolate(template: string, params?: Record<string, string | number>): string {
  if (!params) return template;
  return template.replace(/\{(\w+)\}/g, (whole, key: string) =>
    Object.prototype.hasOwnProperty.call(params, key) ? String(params[key]) : whole,
  );
}

/** A translate function over `dicts`: the locale's string, else English, else the key. */
export function translator(dicts: Dicts, locale: Locale) {
  return (key: string, params?: Record<string, string | number>): string => {
    const template = dicts[locale][key] ?? dicts.en[key] ?? key;
    return interpolate(template, params);
  };
}

/** Merges per-area dictionaries into one; a key defined twice is a bug. */
export function mergeDicts(...parts: Dicts[]): Dicts {
  const out: Dicts = { en: {}, "zh-CN": {} };
  for (const part of parts) {
    for (const locale of LOCALES) {
      for (const [key, value] of Object.entries(part[locale])) {
        if (key in out[locale]) throw new Error(`i18n key defined twice: ${key}`);
        out[locale][key] = value;
      }
    }
  }
  return out;
}

/** Keys present in one locale and missing in the other (a test keeps this empty). */
export function missingKeys(dicts: Dicts): string[] {
  const en = new Set(Object.keys(dicts.en));
  const zh = new Set(Object.keys(dicts["zh-CN"]));
  const out: string[] = [];
  for (const k of en) if (!zh.has(k)) out.push(`zh-CN:${k}`);
  for (const k of zh) if (!en.has(k)) out.push(`en:${k}`);
  return out;
}
