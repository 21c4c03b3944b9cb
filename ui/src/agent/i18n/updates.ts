// The Settings tab of desktop updates (its own strings are the desktop's,
// ui/src/desktop/strings.ts, "updates.*").
import { defineDicts } from "../../lib/i18n";

export const updates = defineDicts({
  en: {
    "settings.tab.updates": "Updates",
  },
  "zh-CN": {
    "settings.tab.updates": "更新",
  },
});
