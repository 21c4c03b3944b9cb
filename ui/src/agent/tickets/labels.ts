// Display helpers shared by the tickets screens (names, requester text).
import type { Translate } from "../../lib/i18n";
import type { Key } from "../i18n";
import type { Ticket } from "../../lib/types";

type T = Translate<Key>;

/** The requester as a short text: the email, else "Visitor", else "No requester". */
export function requesterText(ticket: Ticket, t: T): string {
  if (ticket.requester.email) return ticket.requester.email;
  if (ticket.requester.visitor_id) return t("tickets.visitor");
  return t("tickets.no_requester");
}
