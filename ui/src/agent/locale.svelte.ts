// The UI's language, reactive: follows the browser/OS until the agent picks
// one (kept in localStorage: a preference, not a secret).
import { detectLocale, isKey, translator, type Locale, type Params } from "../lib/i18n";
import { dicts, type Key } from "./i18n";

const KEY = "kefu.locale";

function initial(): Locale {
  const saved = typeof localStorage !== "undefined" ? localStorage.getItem(KEY) : null;
  if (saved === "en" || saved === "zh-CN") return saved;
  return detectLocale(typeof navigator !== "undefined" ? navigator.languages : []);
}

class LocaleState {
  current = $state<Locale>(initial());
  t = $derived(translator(dicts, this.current));

  set(locale: Locale) {
    this.current = locale;
    localStorage.setItem(KEY, locale);
    document.documentElement.lang = locale;
  }
}

export const locale = new LocaleState();
if (typeof document !== "undefined") document.documentElement.lang = locale.current;

/** Shorthand for components: `t("key", {name})`. */
export function t(key: Key, params?: Params): string {
  return locale.t(key, params);
}

/**
 * For a key built from server data (a reason code or status a newer server
 * may add): its string when the dictionary has the key, else `fallback`.
 */
export function tOr(key: string, fallback: string, params?: Params): string {
  return isKey(dicts, key) ? locale.t(key, params) : fallback;
}
