// What the desktop screens share: the shell's config, whether the
// preferences panel is open, and on a peer the link to the shop's host.
import type { DesktopConfig, FoundUpdate, LinkStatus } from "./bridge";

export const desktopUi = $state<{ config: DesktopConfig | null; prefsOpen: boolean; link: LinkStatus | null; update: FoundUpdate | null }>({
  config: null,
  prefsOpen: false,
  link: null,
  update: null,
});
