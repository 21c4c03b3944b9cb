// Start-up of the workstation inside the desktop app (src-tauri/): asks the
// shell where its embedded server is, runs the first-start setup when the
// store has no account yet, keeps the session token in the OS keyring
// instead of sessionStorage, turns live frames into native notifications,
// reports the agent's availability and unread count to the tray, and answers the tray
// (open a chat, switch availability, preferences).
import { mount, unmount } from "svelte";
import type { TokenStore } from "../agent/session.svelte";
import { session } from "../agent/session.svelte";
import { locale } from "../agent/locale.svelte";
import { chats } from "../agent/chats/store.svelte";
import type { Conversation } from "../lib/types";
import { desktop, type DesktopEvent, type FoundUpdate, type LinkStatus } from "./bridge";
import { Watcher } from "./events";
import { dt } from "./i18n";
import { desktopUi } from "./state.svelte";
import Prefs from "./Prefs.svelte";
import LinkBanner from "./LinkBanner.svelte";
import UpdateBanner from "./UpdateBanner.svelte";
import Setup from "./Setup.svelte";
import Startup from "./Startup.svelte";

/** Routes a notification click may open (the shell validated the id too). */
const ROUTE = /^#\/(chats|queue|tickets)\/[A-Za-z0-9_-]{1,64}$/;

/** The token lives in the keyring; this cache makes the store synchronous. */
export function keyringTokenStore(initial: string | null, warn: (err: unknown) => void): TokenStore {
  let token = initial;
  return {
    get: () => token,
    set: (value) => {
      token = value;
      desktop.tokenSet(value).catch(warn);
    },
    clear: () => {
      token = null;
      desktop.tokenClear().catch(warn);
    },
  };
}

function warn(err: unknown) {
  console.warn("kefu desktop:", err);
}

function installHooks() {
  const hooks: Record<string, (arg: unknown) => void> = {
    open: (route) => {
      if (typeof route === "string" && ROUTE.test(route)) location.hash = route;
    },
    status: (status) => {
      if (session.me && (status === "online" || status === "away" || status === "offline")) {
        session.setStatus(status).catch(warn);
      }
    },
    prefs: () => (desktopUi.prefsOpen = true),
    link: (status) => {
      if (status && typeof status === "object") desktopUi.link = status as LinkStatus;
    },
    // "Check on start" found an update: shown, never installed from here.
    update: (found) => {
      if (found && typeof found === "object") desktopUi.update = found as FoundUpdate;
    },
  };
  (window as unknown as { __kefuDesktop: unknown }).__kefuDesktop = {
    call: (hook: string, arg: unknown) => hooks[hook]?.(arg),
  };
  window.addEventListener("keydown", (event) => {
    if ((event.ctrlKey || event.metaKey) && event.key === ",") {
      event.preventDefault();
      desktopUi.prefsOpen = true;
    }
  });
}

function watchLiveFrames() {
  const watcher = new Watcher(
    () => session.me?.id ?? null,
    () => dt("notify.visitor"),
  );
  const emit = (event: DesktopEvent | null) => {
    if (event) desktop.notify(event, locale.current).catch(warn);
  };
  session.onWelcome(() => {
    // What exists already is not news: remember it silently.
    for (const query of [{ status: "queued", limit: 200 }, { assignee: "me", limit: 200 }]) {
      session.api
        .get<{ conversations: Conversation[] }>("/conversations", query)
        .then(({ conversations }) => watcher.seed(conversations))
        .catch(warn);
    }
  });
  session.on("conversation", (frame) => emit(watcher.conversation(frame.conversation)));
  session.on("ticket", (frame) => emit(watcher.ticket(frame.ticket)));
  session.on("message", async (frame) => {
    const id = frame.message.conversation_id;
    if (!watcher.knows(id)) {
      try {
        const { conversation } = await session.api.get<{ conversation: Conversation }>(
          `/conversations/${encodeURIComponent(id)}`,
        );
        emit(watcher.conversation(conversation));
      } catch (err) {
        warn(err);
      }
    }
    emit(watcher.message(frame.message));
  });
  $effect.root(() => {
    $effect(() => {
      const status = session.me?.status;
      if (status) desktop.reportStatus(status).catch(warn);
    });
    $effect(() => {
      // The same total as the Chats tab's badge and the `(N) Kefu` title.
      desktop.reportUnread(session.me ? chats.unreadTotal : 0).catch(warn);
    });
  });
}

/** Boots the desktop workstation into `target`; `mountApp` mounts the usual App. */
export async function boot(target: HTMLElement, mountApp: () => void): Promise<void> {
  const config = await desktop.config();
  desktopUi.config = config;
  installHooks();
  const prefsHost = document.createElement("div");
  document.body.append(prefsHost);
  mount(Prefs, { target: prefsHost });
  if (config.lan_role === "peer") {
    const linkHost = document.createElement("div");
    document.body.append(linkHost);
    mount(LinkBanner, { target: linkHost });
    desktop.lanInfo().then((info) => (desktopUi.link ??= info.link)).catch(warn);
  }
  const updateHost = document.createElement("div");
  document.body.append(updateHost);
  mount(UpdateBanner, { target: updateHost });
  desktop.updateInfo().then((info) => (desktopUi.update ??= info.pending)).catch(warn);
  if (config.status.state !== "running") {
    mount(Startup, { target, props: { status: config.status } });
    return;
  }
  const remembered = await desktop.tokenGet().catch((err) => {
    warn(err);
    return null;
  });
  session.tokenStore = keyringTokenStore(remembered, warn);
  watchLiveFrames();
  if (config.needs_setup) {
    const setup = mount(Setup, {
      target,
      props: {
        ondone: () => {
          void unmount(setup);
          mountApp();
        },
      },
    });
  } else {
    mountApp();
  }
}
