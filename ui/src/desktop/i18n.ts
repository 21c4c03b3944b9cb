// The desktop screens' translate function, following the workstation's language.
import { translator, type KeyOf, type Params } from "../lib/i18n";
import { locale } from "../agent/locale.svelte";
import { dicts } from "./strings";

/** `dt("key", {param})` in the current workstation language. */
export function dt(key: KeyOf<typeof dicts>, params?: Params): string {
  return translator(dicts, locale.current)(key, params);
}
