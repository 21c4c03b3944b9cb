// What the desktop screens share: the shell's config, whether the
// preferences panel is open, and on a peer the link to the shop's host.
import type { DesktopConfig, LinkStatus } from "./bridge";

export const desktopUi = $state<{ config: DesktopConfig | null; prefsOpen: boolean; link: LinkStatus | null }>({
  config: null,
  prefsOpen: false,
  link: null,
});
