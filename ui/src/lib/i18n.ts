// Translation: dictionaries of plain strings with `{name}` placeholders, in
// English and Simplified Chinese. The locale follows the browser (or the OS,
// through the desktop's web view) unless the user picked one.

export type Locale = "en" | "zh-CN";
export const LOCALES: readonly Locale[] = ["en", "zh-CN"];

/** One language's strings; `K` is the dictionary's key type. */
export type Dict<K extends string = string> = Record<K, string>;
/** Both languages' strings over the same keys. */
export type Dicts<K extends string = string> = Record<Locale, Dict<K>>;
/** The keys of a dictionary: `KeyOf<typeof dicts>`. */
export type KeyOf<D> = D extends Dicts<infer K> ? K : never;
/** Named parameters of a string's `{name}` placeholders. */
export type Params = Record<string, string | number>;
/** A translate function over the keys `K`: a misspelt key fails `npm run check`. */
export type Translate<K extends string = string> = (key: K, params?: Params) => string;

/**
 * A dictionary whose keys are those of its English strings (`keyof typeof en`);
 * the zh-CN strings must have exactly the same keys, or the type check fails.
 */
export function defineDicts<const E extends Dict>(dicts: { en: E; "zh-CN": NoInfer<Record<keyof E, string>> }): Dicts<keyof E & string> {
  return dicts;
}

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
export function interpolate(template: string, params?: Params): string {
  if (!params) return template;
  return template.replace(/\{(\w+)\}/g, (whole, key: string) =>
    Object.prototype.hasOwnProperty.call(params, key) ? String(params[key]) : whole,
  );
}

/** A translate function over `dicts`: the locale's string, else English, else the key. */
export function translator<K extends string>(dicts: Dicts<K>, locale: Locale): Translate<K> {
  return (key: K, params?: Params): string => {
    const template = (dicts[locale][key] as string | undefined) ?? (dicts.en[key] as string | undefined) ?? key;
    return interpolate(template, params);
  };
}

/** Merges per-area dictionaries into one; a key defined twice is a bug. */
export function mergeDicts<P extends Dicts<string>[]>(...parts: P): Dicts<KeyOf<P[number]>> {
  const out: Dicts = { en: {}, "zh-CN": {} };
  for (const part of parts) {
    for (const locale of LOCALES) {
      for (const [key, value] of Object.entries(part[locale])) {
        if (key in out[locale]) throw new Error(`i18n key defined twice: ${key}`);
        out[locale][key] = value;
      }
    }
  }
  return out as Dicts<KeyOf<P[number]>>;
}

/** Whether `key` is one of the dictionary's keys: for keys built from server data. */
export function isKey<K extends string>(dicts: Dicts<K>, key: string): key is K {
  return Object.prototype.hasOwnProperty.call(dicts.en, key);
}

/** Keys present in one locale and missing in the other (a test keeps this empty). */
export function missingKeys(dicts: Dicts<string>): string[] {
  const en = new Set(Object.keys(dicts.en));
  const zh = new Set(Object.keys(dicts["zh-CN"]));
  const out: string[] = [];
  for (const k of en) if (!zh.has(k)) out.push(`zh-CN:${k}`);
  for (const k of zh) if (!en.has(k)) out.push(`en:${k}`);
  return out;
}

/** The `{name}` placeholders of a string, sorted and without repeats. */
export function placeholders(template: string): string[] {
  return [...new Set([...template.matchAll(/\{(\w+)\}/g)].map((m) => m[1]))].sort();
}

/** Keys whose English and zh-CN strings name different placeholders (a test keeps this empty). */
export function placeholderMismatches(dicts: Dicts<string>): string[] {
  const out: string[] = [];
  for (const [key, en] of Object.entries(dicts.en)) {
    const zh = dicts["zh-CN"][key];
    if (zh === undefined) continue;
    const a = placeholders(en).join(",");
    const b = placeholders(zh).join(",");
    if (a !== b) out.push(`${key}: en {${a}} zh-CN {${b}}`);
  }
  return out;
}
