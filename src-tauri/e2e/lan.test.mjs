// End-to-end test of LAN hosting in the real desktop app (docs/LAN.md):
// instance A is set up and promoted to the shop's host from Settings → LAN
// (its LAN listener on 127.0.0.2); instance B, a second app with its own
// data dir, joins it from its first-start screen with A's pairing link;
// both screens show the same code, the admin approves B on A with the code
// B shows; B's embedded server restarts as a peer (relaying to A), the
// owner signs in on B with A's account, the window shows "connected", and
// B answers a chat a visitor started on the host's API. Saves screenshots of
// both sides of pairing (docs/lan-pair-host.png, docs/lan-pair-peer.png).
//
// Two instances on one machine: the single-instance plugin would hand B
// over to A (one D-Bus name per app), as it should between two launches of
// one install; two computers do not share a session bus, so B gets its own
// (a private dbus-daemon) and no keyring ("remember me" off).
//
// Run by scripts/test-desktop (KEFU_DESKTOP_BIN, TAURI_DRIVER, a display).
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { WebDriver } from "./webdriver.mjs";
import { stopApps } from "./procs.mjs";
import { api, freePort, startDriver, waitHttp } from "./harness.mjs";

const BIN = process.env.KEFU_DESKTOP_BIN;
const DOCS = process.env.KEFU_DESKTOP_SCREENSHOT_DIR ?? resolve(import.meta.dirname, "../../docs");
const OWNER = { username: "owner", password: "correct horse battery" };

/** A private D-Bus session bus: its address and the daemon. */
async function privateBus() {
  const child = spawn("dbus-daemon", ["--session", "--nofork", "--print-address=1"], { stdio: ["ignore", "pipe", "inherit"] });
  const address = await new Promise((res, rej) => {
    let out = "";
    const timer = setTimeout(() => rej(new Error("dbus-daemon did not start")), 10000);
    child.stdout.on("data", (d) => {
      out += d;
      if (out.includes("\n")) {
        clearTimeout(timer);
        res(out.trim().split("\n")[0]);
      }
    });
  });
  return { address, child };
}

/** A free TCP port on `host`. */
async function freePortOn(host) {
  const { createServer } = await import("node:net");
  return new Promise((res, rej) => {
    const s = createServer();
    s.listen(0, host, () => {
      const { port } = s.address();
      s.close(() => res(port));
    });
    s.on("error", rej);
  });
}

test("desktop LAN: promote A to host, B pairs from its first start, approved on A, answers a visitor through the relay", { timeout: 300000 }, async () => {
  assert.ok(BIN, "KEFU_DESKTOP_BIN is set");
  const home = mkdtempSync(join(tmpdir(), "kefu-desktop-lan-"));
  const [portA, portB, lanPort] = [await freePort(), await freePort(), await freePortOn("127.0.0.2")];
  const baseA = `http://127.0.0.1:${portA}`;
  const baseB = `http://127.0.0.1:${portB}`;
  const envA = {
    KEFU_DESKTOP_DATA_DIR: join(home, "a-data"),
    KEFU_DESKTOP_CONFIG_DIR: join(home, "a-config"),
    KEFU_DESKTOP_PORT: String(portA),
    // No mDNS on this machine's interfaces from a test (docs/LAN.md).
    KEFU_DESKTOP_MDNS_BROWSE: "off",
    LANG: "en_US.UTF-8",
  };
  const bus = await privateBus();
  const envB = {
    KEFU_DESKTOP_DATA_DIR: join(home, "b-data"),
    KEFU_DESKTOP_CONFIG_DIR: join(home, "b-config"),
    KEFU_DESKTOP_PORT: String(portB),
    DBUS_SESSION_BUS_ADDRESS: bus.address,
    KEFU_DESKTOP_MDNS_BROWSE: "off",
    LANG: "en_US.UTF-8",
  };
  mkdirSync(envB.KEFU_DESKTOP_CONFIG_DIR, { recursive: true });
  writeFileSync(join(envB.KEFU_DESKTOP_CONFIG_DIR, "desktop.toml"), "remember_me = false\n");
  const driverA = await startDriver(envA);
  const driverB = await startDriver(envB);
  const a = new WebDriver(driverA.url);
  const b = new WebDriver(driverB.url);
  const figures = {};
  try {
    // A: first start, the owner and the shop's website.
    await a.start(BIN);
    await waitHttp(`${baseA}/healthz`);
    await a.type(await a.waitFor('[data-testid="setup-username"]', 30000), OWNER.username);
    await a.type(await a.find('[data-testid="setup-password"]'), OWNER.password);
    await a.type(await a.find('[data-testid="setup-password-again"]'), OWNER.password);
    await a.click(await a.find('[data-testid="setup-create-owner"]'));
    await a.type(await a.waitFor('[data-testid="app-create"] input'), "Tea House");
    await a.click(await a.find('[data-testid="app-create"] button[type="submit"]'));
    const snippet = await a.prop(await a.waitFor('[data-testid="embed-snippet"]'), "value");
    const appKey = /data-app-key="(ak_[A-Za-z0-9_-]+)"/.exec(snippet)?.[1];
    assert.ok(appKey, snippet);
    await a.click(await a.find('[data-testid="setup-done"]'));
    await a.waitFor("nav");

    // A: Settings → LAN → make this computer the shop's host, on 127.0.0.2
    // (mDNS off: tests send nothing beyond loopback).
    await a.exec("location.hash = arguments[0]", ["#/settings/lan"]);
    const form = await a.waitFor('[data-testid="lan-host-form"]');
    assert.ok(form);
    await a.type(await a.find('[data-testid="lan-shop-name"]'), "Tea House");
    const bind = await a.find('[data-testid="lan-bind"]');
    await a.clear(bind);
    await a.type(bind, `127.0.0.2:${lanPort}`);
    await a.click(await a.find('[data-testid="lan-mdns"]'));
    const promoted = Date.now();
    await a.click(await a.find('[data-testid="lan-promote"]'));
    // The server restarts with its LAN listener; the page reloads, still
    // signed in (the keyring), and shows the pairing link.
    await a.waitFor('[data-testid="lan-this-computer"][data-role="host"]', 30000);
    const linkBox = await a.waitFor('[data-testid="lan-pairing-link"]', 30000);
    figures.promote_ms = Date.now() - promoted;
    const link = await a.prop(linkBox, "value");
    const hostId = await a.text(await a.find('[data-testid="lan-device-id"]'));
    assert.equal(link, `kefu://pair?host=127.0.0.2:${lanPort}&id=${hostId}`);
    const ownerA = (await api(baseA, "POST", "/auth/login", null, OWNER)).token;
    const status = await api(baseA, "GET", "/lan/status", ownerA);
    assert.equal(status.hosting, true);
    assert.equal(status.listening, `127.0.0.2:${lanPort}`);

    // B: first start; instead of a new shop, join A with its link.
    await b.start(BIN);
    await waitHttp(`${baseB}/healthz`);
    await b.click(await b.waitFor('[data-testid="setup-join"]', 30000));
    await b.type(await b.waitFor('[data-testid="lan-join-target"]'), link);
    await b.type(await b.find('[data-testid="lan-join-name"]'), "Front desk");
    const joinStarted = Date.now();
    await b.click(await b.find('[data-testid="lan-join-start"]'));
    const codeB = (await b.text(await b.waitFor('[data-testid="lan-join-code"]', 30000))).trim();
    assert.match(codeB, /^\d{3} \d{3}$/);
    await b.waitFor('[data-testid="lan-join-waiting"]');
    writeFileSync(join(DOCS, "lan-pair-peer.png"), await b.screenshot());

    // A: the device waits with the same code; the admin types B's code.
    await a.waitFor('[data-testid="lan-pending-device"]', 30000);
    const codeA = (await a.text(await a.find('[data-testid="lan-device-code"]'))).trim();
    assert.equal(codeA, codeB, "both screens show the same code");
    // A wrong code approves nothing.
    const wrong = codeB.replace(/^\d/, (d) => String((Number(d) + 1) % 10));
    await a.type(await a.find('[data-testid="lan-approve-code"]'), wrong);
    await a.click(await a.find('[data-testid="lan-approve"]'));
    await a.waitFor('[data-testid="lan-error"]');
    assert.equal((await api(baseA, "GET", "/lan/devices", ownerA)).devices[0].status, "pending");
    const codeInput = await a.find('[data-testid="lan-approve-code"]');
    await a.clear(codeInput);
    await a.type(codeInput, codeB);
    await a.until("the typed code shows", async () => (await a.prop(codeInput, "value")) === codeB);
    await new Promise((r) => setTimeout(r, 300));
    writeFileSync(join(DOCS, "lan-pair-host.png"), await a.screenshot());
    await a.click(await a.find('[data-testid="lan-approve"]'));
    await a.until("B is approved on A", async () => {
      const { devices } = await api(baseA, "GET", "/lan/devices", ownerA);
      return devices.length === 1 && devices[0].status === "approved" && devices[0].name === "Front desk";
    });

    // B: pinned, restarted as a peer: its link is connected and the page
    // asks for the host's account.
    const linkB = await b.until("B's relay is connected to A", async () => {
      const res = await fetch(`${baseB}/api/v1/lan/link`);
      const json = res.ok ? await res.json() : null;
      return json?.state === "connected" ? json : null;
    }, 30000);
    figures.join_ms = Date.now() - joinStarted;
    assert.equal(linkB.host, `127.0.0.2:${lanPort}`);
    assert.equal(linkB.host_device_id, hostId);
    await b.type(await b.waitFor("#login-username", 30000), OWNER.username);
    await b.type(await b.find("#login-password"), OWNER.password);
    await b.click(await b.find('button[type="submit"]'));
    await b.waitFor("nav", 30000);
    await b.waitFor('[data-testid="lan-link"][data-state="connected"]', 20000);

    // A visitor on the host's API; B claims the chat and answers.
    const visitor = await api(baseA, "POST", "/visitor/sessions", null, { app_key: appKey, name: "Vera Visitor" });
    await api(baseA, "POST", "/visitor/messages", visitor.token, { client_msg_id: "lan-e2e-1", content: "Is the oolong in stock?" });
    const cid = visitor.conversation_id;
    await b.exec("location.hash = arguments[0]", ["#/queue"]);
    await b.until("the chat reaches the owner on B", async () => {
      const claim = await b.findAll(`[data-conversation-id="${cid}"] [data-testid="claim"]`);
      if (claim.length) await b.click(claim[0]);
      const { conversation } = await api(baseA, "GET", `/conversations/${cid}`, ownerA);
      return conversation.assignee_id !== null;
    }, 30000);
    await b.exec("location.hash = arguments[0]", [`#/chats/${encodeURIComponent(cid)}`]);
    await b.until("the visitor's message shows on B", async () => {
      return (await b.text(await b.find('[data-testid="messages"]'))).includes("Is the oolong in stock?");
    }, 30000);
    await b.type(await b.waitFor('[data-testid="composer"]'), "Yes, 200 g tins. — from the front desk");
    await b.click(await b.find('[data-testid="send"]'));
    await b.until("the visitor receives B's reply", async () => {
      const { messages } = await api(baseA, "GET", "/visitor/messages?after=0&limit=50", visitor.token);
      return messages.some((m) => m.sender.type === "agent" && m.content === "Yes, 200 g tins. — from the front desk");
    });
    console.log(`desktop LAN e2e figures: ${JSON.stringify(figures)}`);
  } catch (err) {
    // What each window showed when it failed, for the person reading the log.
    for (const [name, wd] of [["a", a], ["b", b]]) {
      const shot = join(tmpdir(), `kefu-lan-e2e-${name}.png`);
      await wd.screenshot().then((png) => writeFileSync(shot, png)).catch(() => {});
      console.log(`# window ${name} at the failure: ${shot}`);
    }
    throw err;
  } finally {
    await a.quit();
    await b.quit();
    driverA.child.kill();
    driverB.child.kill();
    const left = (await stopApps(envA.KEFU_DESKTOP_DATA_DIR)) + (await stopApps(envB.KEFU_DESKTOP_DATA_DIR));
    if (left > 0) console.log(`# ${left} app process(es) outlived the WebDriver sessions; stopped`);
    bus.child.kill();
    rmSync(home, { recursive: true, force: true });
  }
});
