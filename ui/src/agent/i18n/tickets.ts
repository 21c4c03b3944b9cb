// Strings of the tickets screens (keys start with "tickets.").
import type { Dicts } from "../../lib/i18n";

export const tickets: Dicts = {
  en: {},
  "zh-CN": {},
};
