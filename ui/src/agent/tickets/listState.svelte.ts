// The tickets list's filters outlive the list component, so opening a
// ticket and coming back shows the same view the agent left; they are kept
// in sessionStorage so a reload keeps them too (per tab, like the token).
import { defaultFilters, restoreFilters, type TicketFilters } from "./ticketList";

const KEY = "kefu.tickets.filters";

function initial(): TicketFilters {
  try {
    return restoreFilters(typeof sessionStorage !== "undefined" ? sessionStorage.getItem(KEY) : null);
  } catch {
    return defaultFilters();
  }
}

export const listState: { filters: TicketFilters } = $state({ filters: initial() });

/** Remembers the current filters (called by the list whenever they change). */
export function saveFilters(filters: TicketFilters) {
  try {
    sessionStorage.setItem(KEY, JSON.stringify(filters));
  } catch {
    // Storage full or blocked: the filters just do not survive a reload.
  }
}
