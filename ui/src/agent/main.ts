// Entry point of the agent workstation, served at `/`.
import { mount } from "svelte";
import "./app.css";
import App from "./App.svelte";

const target = document.getElementById("app")!;
const start = () => mount(App, { target });

// Desktop hook (src-tauri): inside the desktop app the shell's boot runs
// first (embedded server, first-start setup, keyring token store,
// notifications); it lives in its own chunk, so browsers never load it.
if ((globalThis as { __KEFU_DESKTOP__?: boolean }).__KEFU_DESKTOP__ === true) {
  import("../desktop/boot.svelte")
    .then(({ boot }) => boot(target, start))
    .catch((err) => {
      console.error("kefu desktop boot failed", err);
      target.textContent = `Kefu could not start: ${err instanceof Error ? err.message : String(err)}`;
    });
} else {
  start();
}
