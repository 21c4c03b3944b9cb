// The tickets list's filters outlive the list component, so opening a
// ticket and coming back shows the same view the agent left.
import { defaultFilters, type TicketFilters } from "./ticketList";

export const listState: { filters: TicketFilters } = $state({ filters: defaultFilters() });
