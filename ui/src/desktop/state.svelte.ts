// What the desktop screens share: the shell's config and whether the
// preferences panel is open.
import type { DesktopConfig } from "./bridge";

export const desktopUi = $state<{ config: DesktopConfig | null; prefsOpen: boolean }>({
  config: null,
  prefsOpen: false,
});
