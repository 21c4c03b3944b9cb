// Entry point of the widget's iframe app, served at /widget/frame.html.
// Embedded, it waits for the page's `init` (so the first session is already
// the right user); opened on its own (a link to the chat), it starts at once.
import { mount } from "svelte";
import { detectLocale } from "../../lib/i18n";
import Frame from "./Frame.svelte";
import { Chat } from "./chat.svelte";
import { parseFragment } from "../fragment";
import { createBridge } from "./bridge";
import { contrastText } from "./meta";
import "./frame.css";

const params = parseFragment(location.hash);
const bridge = createBridge(params.origin);
const chat = new Chat(
  params.appKey,
  params.locale ?? detectLocale(navigator.languages ?? [navigator.language]),
  (message) => bridge.post({ type: "message", message }),
  () => bridge.post({ type: "ready" }),
  (token) => bridge.post({ type: "session", token }),
);

// The shop's color (data-color), with readable text on it.
if (params.color) {
  document.documentElement.style.setProperty("--accent", params.color);
  document.documentElement.style.setProperty("--accent-text", contrastText(params.color));
}

mount(Frame, { target: document.getElementById("app")!, props: { chat, bridge } });

if (!params.appKey) {
  chat.phase = "error";
  chat.error = chat.t("error.load", { error: "app_key" });
} else if (bridge.embedded) {
  bridge.listen((c) => void chat.command(c));
  bridge.post({ type: "loaded" });
} else {
  chat.open = true;
  void chat.start();
}
addEventListener("pagehide", () => chat.stopTyping());
