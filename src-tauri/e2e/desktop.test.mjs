// End-to-end test of the real desktop app under Xvfb: tauri-driver in front
// of Debian's WebKitWebDriver drives the kefu-desktop binary on a fresh data
// dir. Checks: the app starts, its embedded server answers /healthz, the
// first start creates the owner (who is signed in) and the first app with
// its embed snippet and its demo page, the landing on the queue with the way to a second agent (a local account, or
// another computer joining over the LAN), a visitor message sent over the API appears in the window, previewed in
// the chat list by the visitor's words rather than the claim's event line, and the reply typed in the window reaches the visitor; a second
// launch hands over to the first and exits (single instance). Then the app
// restarts and the owner is still signed in: the token came back from the
// OS keyring; with ten chats open, the native window title (and so the
// tray) carries the page's unread total. Saves a screenshot (docs/desktop.png) and prints the timings.
//
// Run by scripts/test-desktop, which provides the display, the D-Bus
// session with a notification daemon and a secret store, and these:
//   KEFU_DESKTOP_BIN   the app binary
//   TAURI_DRIVER       the tauri-driver binary
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, writeFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { WebDriver } from "./webdriver.mjs";
import { appMemory, stopApps } from "./procs.mjs";
import { api, freePort, nativeWindowTitles, startDriver, waitHttp } from "./harness.mjs";

const BIN = process.env.KEFU_DESKTOP_BIN;
const SCREENSHOT = process.env.KEFU_DESKTOP_SCREENSHOT ?? resolve(import.meta.dirname, "../../docs/desktop.png");

test("desktop app: first start, chat with a visitor, single instance, keyring sign-in after restart", { timeout: 240000 }, async () => {
  assert.ok(BIN, "KEFU_DESKTOP_BIN is set");
  const home = mkdtempSync(join(tmpdir(), "kefu-desktop-e2e-"));
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const env = {
    KEFU_DESKTOP_DATA_DIR: join(home, "data"),
    KEFU_DESKTOP_CONFIG_DIR: join(home, "config"),
    KEFU_DESKTOP_PORT: String(port),
    KEFU_DESKTOP_MDNS_BROWSE: "off",
    LANG: "en_US.UTF-8",
  };
  const driver = await startDriver(env);
  const wd = new WebDriver(driver.url);
  const figures = {};
  try {
    // 1. Launch; the embedded server answers; the first-start setup shows.
    const launched = Date.now();
    await wd.start(BIN);
    const health = await waitHttp(`${base}/healthz`);
    assert.equal(health.status, 200);
    const owner = await wd.waitFor('[data-testid="setup-username"]');
    figures.launch_to_usable_ms = Date.now() - launched;
    assert.match(await wd.title(), /Kefu/);

    // 2. The owner account, then the first app and its embed snippet.
    await wd.type(await wd.find('[data-testid="setup-display-name"]'), "Olivia Owner");
    await wd.type(owner, "owner");
    await wd.type(await wd.find('[data-testid="setup-password"]'), "correct horse battery");
    await wd.type(await wd.find('[data-testid="setup-password-again"]'), "correct horse battery");
    await wd.click(await wd.find('[data-testid="setup-create-owner"]'));
    const appForm = await wd.waitFor('[data-testid="app-create"] input');
    await wd.type(appForm, "My shop");
    await wd.click(await wd.find('[data-testid="app-create"] button[type="submit"]'));
    const snippetBox = await wd.waitFor('[data-testid="embed-snippet"]');
    const snippet = await wd.prop(snippetBox, "value");
    const appKey = /data-app-key="(ak_[A-Za-z0-9_-]+)"/.exec(snippet)?.[1];
    assert.ok(snippet.includes(`${base}/widget.js`) && appKey, snippet);
    // "Send a test message": the demo page on the embedded server, with the
    // app's widget (the click hands it to the system browser; here the page
    // is fetched as that browser would).
    const demoHref = await wd.prop(await wd.find('[data-testid="demo-link"]'), "href");
    assert.equal(demoHref, `${base}/widget/demo.html?app_key=${appKey}`);
    const demo = await fetch(demoHref);
    assert.equal(demo.status, 200);
    assert.ok((await demo.text()).includes(`data-app-key="${appKey}"`), "the demo page carries the widget");
    await wd.click(await wd.find('[data-testid="setup-done"]'));
    // No chats yet: the owner lands on the queue, shown how to add an agent.
    await wd.until("landing on the queue", async () => (await wd.exec("return location.hash")) === "#/queue");
    // A shop of one is shown both ways to a second agent: a local account,
    // and another computer joining this one's Kefu (Settings → LAN).
    const hint = await wd.text(await wd.waitFor('[data-testid="add-agent-hint"]'));
    assert.match(hint, /only agent/, hint);
    assert.match(hint, /Settings → LAN/, hint);
    await wd.click(await wd.find('[data-testid="add-agent-link"]'));
    await wd.until("the agents tab", async () => (await wd.exec("return location.hash")) === "#/settings/agents");
    await wd.click(await wd.waitFor('[data-testid="new-agent"]'));
    await wd.waitFor('[data-testid="agent-create"]');

    // 3. A visitor writes over the API; the message appears in the window.
    const visitor = await api(base, "POST", "/visitor/sessions", null, { app_key: appKey, name: "Vera Visitor" });
    await api(base, "POST", "/visitor/messages", visitor.token, { client_msg_id: "e2e-1", content: "Hello from the e2e visitor" });
    const cid = visitor.conversation_id;
    const signedIn = (await api(base, "POST", "/auth/login", null, { username: "owner", password: "correct horse battery" })).token;
    assert.equal((await api(base, "GET", "/agents/me", signedIn)).agent.status, "online", "signing in makes the owner available");
    await wd.exec("location.hash = arguments[0]", ["#/queue"]);
    // Routing may have given the chat to the owner already; else claim it.
    await wd.until("the chat reaches the owner", async () => {
      const claim = await wd.findAll(`[data-conversation-id="${cid}"] [data-testid="claim"]`);
      if (claim.length) await wd.click(claim[0]);
      const ownerToken = (await api(base, "POST", "/auth/login", null, { username: "owner", password: "correct horse battery" })).token;
      const { conversation } = await api(base, "GET", `/conversations/${cid}`, ownerToken);
      return conversation.assignee_id !== null;
    });
    await wd.exec("location.hash = arguments[0]", [`#/chats/${encodeURIComponent(cid)}`]);
    await wd.until("the visitor's message shows", async () => {
      const log = await wd.find('[data-testid="messages"]');
      return (await wd.text(log)).includes("Hello from the e2e visitor");
    });
    // The chat list previews what the visitor said, not the event line
    // (the claim's) that is now the conversation's last message.
    const { conversation: claimed } = await api(base, "GET", `/conversations/${cid}`, signedIn);
    assert.equal(claimed.last_message.kind, "event", "the log's head is an event line");
    let item = "";
    await wd
      .until("the chat list previews the visitor's words", async () => {
        // textContent: WebDriver's visible text leaves out what the list's
        // narrow column clips (the name and the preview are ellipsised).
        item = await wd.exec(
          "const el = document.querySelector(arguments[0]); return el ? el.textContent : '(not listed)'",
          [`[data-testid="chat-item"][data-conversation-id="${cid}"]`],
        );
        return /Hello from the e2e visitor/.test(item) && !/joined|assigned/i.test(item);
      })
      .catch((e) => assert.fail(`${e.message}; the chat's list item: ${JSON.stringify(item)}`));

    // 4. The reply typed in the window reaches the visitor.
    const composer = await wd.waitFor('[data-testid="composer"]');
    await wd.type(composer, "Hi Vera, how can I help?");
    await wd.click(await wd.find('[data-testid="send"]'));
    await wd.until("the visitor receives the reply", async () => {
      const { messages } = await api(base, "GET", "/visitor/messages?after=0&limit=50", visitor.token);
      return messages.some((m) => m.sender.type === "agent" && m.content === "Hi Vera, how can I help?");
    });
    writeFileSync(SCREENSHOT, await wd.screenshot());

    // 4b. Single instance: a second launch hands over to the first (which
    // shows and focuses its window) and exits; the first keeps serving.
    const second = spawn(BIN, [], { env: { ...process.env, ...env }, stdio: "ignore" });
    const secondExit = await new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        second.kill();
        reject(new Error("a second launch did not exit"));
      }, 20000);
      second.on("exit", (code) => {
        clearTimeout(timer);
        resolve(code);
      });
    });
    assert.equal(secondExit, 0, "the second launch exits cleanly");
    assert.equal((await fetch(`${base}/healthz`)).status, 200, "the first instance still serves");
    assert.match(await wd.title(), /Kefu/, "the first instance's window is still there");

    // 5. Restart: the session token comes back from the OS keyring.
    await wd.quit();
    await new Promise((r) => setTimeout(r, 1000));
    const relaunched = Date.now();
    await wd.start(BIN);
    await waitHttp(`${base}/healthz`);
    await wd.waitFor('[data-testid="composer"], [data-testid="chat-item"], nav', 30000);
    figures.restart_to_signed_in_ms = Date.now() - relaunched;
    const loginForms = await wd.findAll("#login-username");
    assert.equal(loginForms.length, 0, "signed in from the keyring, no login form");
    // The owner has a chat now: the app opens on the chats.
    await wd.until("landing on the chats", async () => (await wd.exec("return location.hash")) === "#/chats");

    // 6. Idle memory with 10 open chats (the figure of docs/DESKTOP.md).
    const ownerToken = (await api(base, "POST", "/auth/login", null, { username: "owner", password: "correct horse battery" })).token;
    await api(base, "PATCH", `/agents/${(await api(base, "GET", "/agents/me", ownerToken)).agent.id}`, ownerToken, { max_concurrent: 20 }).catch(() => {});
    for (let i = 0; i < 9; i++) {
      const v = await api(base, "POST", "/visitor/sessions", null, { app_key: appKey, name: `Visitor ${i + 2}` });
      await api(base, "POST", "/visitor/messages", v.token, { client_msg_id: `idle-${i}`, content: `Question number ${i + 2}` });
      const { conversation } = await api(base, "GET", `/conversations/${v.conversation_id}`, ownerToken);
      if (!conversation.assignee_id) await api(base, "POST", `/conversations/${v.conversation_id}/claim`, ownerToken).catch(() => {});
    }
    await wd.exec("location.hash = arguments[0]", [`#/chats/${encodeURIComponent(cid)}`]);
    await wd.until("ten chats listed", async () => (await wd.findAll('[data-testid="chat-item"]')).length >= 10, 30000).catch(() => {});
    figures.open_chats = (await wd.findAll('[data-testid="chat-item"]')).length;
    // The tray and the native window title carry the workstation's unread
    // total: the new chats' messages, the number on the page's Chats tab.
    let pageCount = 0;
    await wd.until("the native window title shows the page's unread count", async () => {
      const match = /^\((\d+)\) /.exec(await wd.title());
      pageCount = match ? Number(match[1]) : 0;
      return pageCount > 0 && nativeWindowTitles().includes(`Kefu (${pageCount})`);
    }, 20000);
    assert.ok(pageCount >= 1 && pageCount <= 9, `unread total ${pageCount}`);
    figures.unread_in_title = pageCount;
    await new Promise((r) => setTimeout(r, 10000));
    figures.idle_memory = appMemory(env.KEFU_DESKTOP_DATA_DIR);
    console.log(`desktop e2e figures: ${JSON.stringify(figures)}`);
  } finally {
    await wd.quit();
    driver.child.kill();
    const left = await stopApps(env.KEFU_DESKTOP_DATA_DIR);
    if (left > 0) console.log(`# ${left} app process(es) outlived the WebDriver session; stopped`);
    rmSync(home, { recursive: true, force: true });
  }
});
