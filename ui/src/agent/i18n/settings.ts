// Strings of the settings screens (keys start with "settings.").
import type { Dicts } from "../../lib/i18n";

export const settings: Dicts = {
  en: {},
  "zh-CN": {},
};
