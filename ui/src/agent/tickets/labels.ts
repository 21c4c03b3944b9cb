// Display helpers shared by the tickets screens (names, requester text).
import type { Ticket } from "../../lib/types";

type T = (key: string, params?: Record<string, string | number>) => string;

/** The requester as a short text: the email, else "Visitor", else "No requester". */
export function requesterText(ticket: Ticket, t: T): string {
  if (ticket.requester.email) return ticket.requester.email;
  if (ticket.requester.visitor_id) return t("tickets.visitor");
  return t("tickets.no_requester");
}
