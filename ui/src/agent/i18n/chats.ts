// Strings of the chats screens (keys start with "chats.").
import type { Dicts } from "../../lib/i18n";

export const chats: Dicts = {
  en: {},
  "zh-CN": {},
};
