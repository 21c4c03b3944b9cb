// All of the workstation's strings, merged from one file per area so that
// screens can be worked on apart. A test checks both languages have every key.
import { mergeDicts, type KeyOf } from "../../lib/i18n";
import { common } from "./common";
import { chats } from "./chats";
import { tickets } from "./tickets";
import { settings } from "./settings";
import { suggest } from "./suggest";
import { lan } from "./lan";
import { standby } from "./standby";
import { backup } from "./backup";
import { updates } from "./updates";
// Event lines ("X joined the conversation") are shared with the widget.
import { eventDicts } from "../../lib/events";

export const dicts = mergeDicts(common, chats, tickets, settings, eventDicts, suggest, lan, standby, backup, updates);
/** Every key of the workstation's strings: `t("nav.chats")`, and a misspelt key fails the type check. */
export type Key = KeyOf<typeof dicts>;
