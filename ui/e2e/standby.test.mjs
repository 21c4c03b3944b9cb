// Settings → LAN on a host, for an admin, against real processes (issue
// 18, docs/LAN.md "From the desktop"): a host (`serve --lan-bind`) on
// 127.0.0.2, a paired computer (`lan pair`, approved with its code) whose
// `lan standby` runs on 127.0.0.3. In the browser the admin switches
// "Keep a copy of the shop on this computer" on (and off and on again),
// watches the standby's lag come down to "up to date" as a visitor writes,
// is refused a malformed address, and hands the shop over with the
// confirm dialog: the outcome names the new term, the standby serves the
// shop with the visitor's messages, the old host shows where the shop
// went. Meanwhile an agent works on a third computer, a peer (`serve
// --peer-of`) on 127.0.0.4: after the handover its page says where the
// shop moved, without a reload, and its reply lands on the new host. A
// screenshot of the tab goes to docs/.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, copyFileSync } from "node:fs";
import { createServer as createNetServer } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { ADMIN, launchBrowser, serverBin, shot, signIn, until, watchPage } from "./harness.mjs";

const HOST_IP = "127.0.0.2";
const STANDBY_IP = "127.0.0.3";
const PEER_IP = "127.0.0.4";
const bin = serverBin();
const procs = [];
const dirs = [];
let browser;

function portOn(ip) {
  return new Promise((ok, fail) => {
    const srv = createNetServer();
    srv.on("error", fail);
    srv.listen(0, ip, () => {
      const { port } = srv.address();
      srv.close(() => ok(port));
    });
  });
}

const ENV = {
  RUST_LOG: "warn",
  KEFU_LIMITS__LOGIN_PER_MINUTE: "0",
  KEFU_LIMITS__PASSWORD_ATTEMPTS_PER_ACCOUNT_PER_HOUR: "0",
  KEFU_LIMITS__VISITOR_MESSAGES_PER_SECOND: "0",
  KEFU_LIMITS__VISITOR_MESSAGE_BURST: "0",
  KEFU_PRESENCE__AWAY_GRACE_SECS: "3600",
};

function run(args, what) {
  const proc = spawn(bin, args, { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, ...ENV } });
  const out = { stdout: "", stderr: "", proc };
  proc.stdout.on("data", (d) => (out.stdout += d));
  proc.stderr.on("data", (d) => (out.stderr += d));
  proc.on("error", (err) => (out.stderr += `${what}: ${err.message}`));
  procs.push(proc);
  return out;
}

function tempDir() {
  const dir = mkdtempSync(join(tmpdir(), "kefu-e2e-standby-"));
  dirs.push(dir);
  return dir;
}

async function api(origin, method, path, body, token) {
  const headers = {};
  if (token) headers.authorization = `Bearer ${token}`;
  if (body !== undefined) headers["content-type"] = "application/json";
  const res = await fetch(`${origin}/api/v1${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null };
}

before(async () => {
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  for (const proc of procs) if (proc.exitCode === null) proc.kill("SIGKILL");
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

test("an admin makes a computer a standby, sees its lag, and hands the shop over to it", async () => {
  // The host.
  const hostDir = tempDir();
  const made = spawnSync(bin, ["admin", "create", "--data-dir", hostDir, "--username", ADMIN.username,
    "--password", ADMIN.password, "--display-name", ADMIN.display_name], { encoding: "utf8" });
  assert.equal(made.status, 0, made.stderr);
  const hostHttp = `${HOST_IP}:${await portOn(HOST_IP)}`;
  const hostLan = `${HOST_IP}:${await portOn(HOST_IP)}`;
  const hostPublic = `${HOST_IP}:${await portOn(HOST_IP)}`;
  const host = run(["serve", "--data-dir", hostDir, "--bind", hostHttp, "--lan-bind", hostLan, "--public-bind", hostPublic,
    "--durability", "os"], "host");
  const origin = `http://${hostHttp}`;
  await until(async () => (await fetch(`${origin}/readyz`)).ok, 30_000, `the host (${host.stderr})`);
  const { body: login } = await api(origin, "POST", "/auth/login", { username: ADMIN.username, password: ADMIN.password });
  const token = login.token;
  const { body: hostStatus } = await api(origin, "GET", "/lan/status", undefined, token);
  assert.equal(hostStatus.hosting, true);
  const link = hostStatus.pairing_links.find((l) => l.includes(HOST_IP)) ?? hostStatus.pairing_links[0];
  assert.ok(link, JSON.stringify(hostStatus));

  // A visitor writes on the host.
  const { body: made2 } = await api(origin, "POST", "/apps", { name: "Tea Shop", identity_verification: "off", allowed_origins: [] }, token);
  const app = made2.app;
  const visitorRes = await fetch(`http://${hostPublic}/api/v1/visitor/sessions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ app_key: app.app_key, name: "王芳" }),
  });
  assert.equal(visitorRes.status, 201);
  const visitor = await visitorRes.json();
  const say = async (id, content) => {
    const res = await fetch(`http://${hostPublic}/api/v1/visitor/messages`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${visitor.token}` },
      body: JSON.stringify({ client_msg_id: id, content }),
    });
    assert.equal(res.status, 201, await res.text());
  };
  await say("m1", "我想问一下发货时间");

  // The other computers pair (their users run `lan pair`), an admin approves each with its code.
  const pairDevice = async (dir, name) => {
    const pairing = run(["lan", "pair", "--link", link, "--name", name, "--data-dir", dir], "pair");
    const code = await until(() => /pairing code: (\d{3} ?\d{3})/.exec(pairing.stdout)?.[1], 20_000, `the code (${pairing.stderr})`);
    const { body: listed } = await api(origin, "GET", "/lan/devices", undefined, token);
    const device = listed.devices.find((d) => d.status === "pending" && d.name === name);
    assert.ok(device, JSON.stringify(listed));
    const approved = await api(origin, "POST", `/lan/devices/${device.device_id}/approve`, { code }, token);
    assert.equal(approved.status, 200, JSON.stringify(approved.body));
    await until(() => pairing.proc.exitCode !== null, 20_000, "lan pair to end");
    assert.equal(pairing.proc.exitCode, 0, pairing.stderr);
    return device;
  };
  const standbyDir = tempDir();
  const device = await pairDevice(standbyDir, "Back office");
  const peerDir = tempDir();
  await pairDevice(peerDir, "Front desk");

  // An agent works on the peer: signed in through its relay, the visitor's chat open.
  const peerHttp = `${PEER_IP}:${await portOn(PEER_IP)}`;
  const peer = run(["serve", "--data-dir", peerDir, "--bind", peerHttp, "--peer-of", hostLan, "--durability", "os"], "peer");
  const peerOrigin = `http://${peerHttp}`;
  await until(async () => (await fetch(`${peerOrigin}/readyz`)).ok, 30_000, `the peer (${peer.stderr})`);
  const claimed = await api(origin, "POST", `/conversations/${visitor.conversation_id}/claim`, {}, token);
  assert.equal(claimed.status, 200, JSON.stringify(claimed.body));
  const agentContext = await browser.newContext({ locale: "en-US", viewport: { width: 1280, height: 800 } });
  const agentPage = await agentContext.newPage();
  const agentProblems = watchPage(agentPage, "agent-on-peer");
  await signIn(agentPage, peerOrigin, ADMIN.username, ADMIN.password);
  await agentPage.goto(`${peerOrigin}/#/chats/${visitor.conversation_id}`);
  await agentPage.locator("[data-testid=message]", { hasText: "发货时间" }).waitFor({ timeout: 10_000 });

  // The admin's tab.
  const context = await browser.newContext({ locale: "en-US", viewport: { width: 1280, height: 1000 } });
  const page = await context.newPage();
  const problems = watchPage(page, "admin");
  await signIn(page, origin, ADMIN.username, ADMIN.password);
  await page.goto(`${origin}/#/settings/lan`);
  const row = page.locator(`[data-testid=lan-standby][data-device-id="${device.device_id}"]`);
  await row.waitFor({ timeout: 10_000 });
  assert.equal(await row.getAttribute("data-standby"), "false");
  const toggle = row.locator("[data-testid=lan-standby-switch]");
  assert.equal(await toggle.isChecked(), false);
  await assert.rejects(() => row.locator("[data-testid=lan-handover]").waitFor({ timeout: 500 }), "no handover for a computer that keeps no copy");

  // On: the host lists it as a standby, waiting for the computer's consent.
  await toggle.check();
  await until(async () => (await row.getAttribute("data-standby")) === "true", 10_000, "the switch on");
  let { body: status } = await api(origin, "GET", "/lan/status", undefined, token);
  assert.deepEqual(status.standbys.map((s) => s.device_id), [device.device_id]);
  assert.equal(await row.getAttribute("data-state"), "waiting");
  assert.match(await row.innerText(), /Waiting for this computer to start keeping its copy/);
  // Off again: the host forgets it as a standby; on again.
  await toggle.uncheck();
  await until(async () => (await row.getAttribute("data-standby")) === "false", 10_000, "the switch off");
  ({ body: status } = await api(origin, "GET", "/lan/status", undefined, token));
  assert.deepEqual(status.standbys, []);
  await toggle.check();
  await until(async () => (await row.getAttribute("data-standby")) === "true", 10_000, "the switch on again");

  // The computer consents: its `lan standby` runs, ready to host on 127.0.0.3.
  const standbyHttp = `${STANDBY_IP}:${await portOn(STANDBY_IP)}`;
  const standbyLan = `${STANDBY_IP}:${await portOn(STANDBY_IP)}`;
  const standby = run(["lan", "standby", "--data-dir", standbyDir, "--bind", standbyHttp, "--lan-bind", standbyLan,
    "--durability", "os"], "standby");
  for (let n = 2; n <= 6; n++) await say(`m${n}`, `第 ${n} 条消息`);
  // The tab follows by itself (no reload): up to date, at the host's last sequence.
  await until(async () => (await row.getAttribute("data-state")) === "caught_up", 20_000, `the standby up to date (${standby.stderr})`);
  ({ body: status } = await api(origin, "GET", "/lan/status", undefined, token));
  const progress = status.standbys[0];
  assert.equal(progress.connected, true);
  assert.equal(progress.full_syncs, 1);
  assert.equal(typeof progress.last_full_sync_seconds, "number");
  await until(async () => (await row.locator("[data-testid=lan-standby-progress]").innerText()).includes(`up to log entry ${status.log_seq}`),
    10_000, "the applied sequence shown");
  assert.match(await row.locator("[data-testid=lan-standby-syncs]").innerText(), /Last full copy .* ago \(1 since this host started\)/);
  await page.locator("[data-testid=lan-standbys]").screenshot({ path: shot("lan-standbys-host") });

  // Hand over: the dialog explains the pause; a malformed address is refused here, nothing asked.
  await row.locator("[data-testid=lan-handover]").click();
  const dialog = row.getByRole("alertdialog");
  assert.match(await dialog.innerText(), /Sending pauses for a moment/);
  const address = row.locator("[data-testid=lan-handover-address]");
  assert.equal(await address.inputValue(), `127.0.0.1:${hostLan.split(":")[1]}`, "the device's IP with this host's port");
  await address.fill("not an address");
  await row.locator("[data-testid=lan-handover-yes]").click();
  await page.locator("[data-testid=lan-standby-error]").waitFor();
  assert.match(await page.locator("[data-testid=lan-standby-error]").innerText(), /HOST:PORT/);
  ({ body: status } = await api(origin, "GET", "/lan/status", undefined, token));
  assert.equal(status.superseded_by, null, "a refused address hands nothing over");
  await page.screenshot({ path: shot("lan-handover-confirm"), fullPage: true });

  await address.fill(standbyLan);
  const asked = Date.now();
  await row.locator("[data-testid=lan-handover-yes]").click();
  const outcome = page.locator("[data-testid=lan-handover-outcome]");
  await outcome.waitFor({ timeout: 30_000 });
  const answered = Date.now() - asked;
  const { body: after } = await api(origin, "GET", "/lan/status", undefined, token);
  assert.equal(after.superseded_by.device_id, device.device_id);
  assert.match(await outcome.innerText(), new RegExp(`handed to Back office \\(term ${after.superseded_by.term}\\); sending paused for \\d+ ms`));
  await page.locator("[data-testid=lan-superseded]").waitFor({ timeout: 10_000 });
  assert.match(await page.locator("[data-testid=lan-superseded]").innerText(), /the shop moved to Back office/);
  // Nothing more to hand over or switch on the old host.
  assert.equal(await toggle.isDisabled(), true);

  // The standby goes on as the host, with the visitor's messages.
  const newOrigin = `http://${standbyHttp}`;
  await until(async () => (await fetch(`${newOrigin}/readyz`)).ok, 30_000, `the new host (${standby.stderr})`);
  const { body: newLogin } = await api(newOrigin, "POST", "/auth/login", { username: ADMIN.username, password: ADMIN.password });
  const { body: newStatus } = await api(newOrigin, "GET", "/lan/status", undefined, newLogin.token);
  assert.equal(newStatus.role, "host");
  assert.ok(newStatus.term > after.term, `${newStatus.term} > ${after.term}`);
  const { body: messages } = await api(newOrigin, "GET", `/conversations/${visitor.conversation_id}/messages`, undefined, newLogin.token);
  const ids = messages.messages.filter((m) => m.sender.type === "visitor").map((m) => m.client_msg_id);
  assert.deepEqual(ids, ["m1", "m2", "m3", "m4", "m5", "m6"]);

  // The agent on the peer: told where the shop went, no reload, and still working.
  const moved = agentPage.locator("[data-testid=shop-moved]");
  await moved.waitFor({ timeout: 20_000 });
  assert.equal(await moved.getAttribute("data-device-id"), device.device_id);
  assert.match(await moved.innerText(), /The shop moved to .*nothing to reload/);
  await agentPage.locator("[data-live=open]").waitFor({ timeout: 20_000 });
  await agentPage.screenshot({ path: shot("lan-handover-peer-agent") });
  copyFileSync(shot("lan-handover-peer-agent"), resolve(import.meta.dirname, "../../docs/lan-handover-peer-agent.png"));
  const composer = agentPage.locator("textarea[data-testid=composer]");
  await composer.fill("已为您查询，今天发货");
  await composer.press("Enter");
  await until(async () => {
    const { body } = await api(newOrigin, "GET", `/conversations/${visitor.conversation_id}/messages`, undefined, newLogin.token);
    return body.messages.some((m) => m.sender.type === "agent" && m.content === "已为您查询，今天发货");
  }, 20_000, "the agent's reply on the new host");
  const { body: linkNow } = await api(peerOrigin, "GET", "/lan/link");
  assert.equal(linkNow.host_device_id, device.device_id, JSON.stringify(linkNow));
  assert.deepEqual(agentProblems, []);
  console.log(`handover from the tab: answered in ${answered} ms, pause ${/paused for (\d+) ms/.exec(await outcome.innerText())[1]} ms`);

  // The same tab in Chinese, on the old host: where the shop went.
  const zh = await browser.newContext({ locale: "zh-CN", viewport: { width: 1280, height: 900 } });
  const zhPage = await zh.newPage();
  problems.push(...watchPage(zhPage, "admin-zh"));
  await signIn(zhPage, origin, ADMIN.username, ADMIN.password).catch(() => {});
  await zhPage.goto(`${origin}/#/settings/lan`);
  const supersededZh = zhPage.locator("[data-testid=lan-superseded]");
  await supersededZh.waitFor({ timeout: 10_000 });
  // The device's name replaces its ID once the device list has loaded.
  await until(async () => /店铺已转到 Back office/.test(await supersededZh.innerText()), 10_000,
    "the successor named in Chinese");
  assert.deepEqual(problems, []);
  copyFileSync(shot("lan-standbys-host"), resolve(import.meta.dirname, "../../docs/lan-standbys-host.png"));
  await zh.close();
  await agentContext.close();
  await context.close();
});

test("on the other computer, its admin keeps a copy from its own Settings → LAN and takes the shop over once the host is gone", async () => {
  const hostDir = tempDir();
  const made = spawnSync(bin, ["admin", "create", "--data-dir", hostDir, "--username", ADMIN.username,
    "--password", ADMIN.password, "--display-name", ADMIN.display_name], { encoding: "utf8" });
  assert.equal(made.status, 0, made.stderr);
  const hostHttp = `${HOST_IP}:${await portOn(HOST_IP)}`;
  const hostLan = `${HOST_IP}:${await portOn(HOST_IP)}`;
  const hostPublic = `${HOST_IP}:${await portOn(HOST_IP)}`;
  const host = run(["serve", "--data-dir", hostDir, "--bind", hostHttp, "--lan-bind", hostLan, "--public-bind", hostPublic,
    "--durability", "os"], "host");
  const origin = `http://${hostHttp}`;
  await until(async () => (await fetch(`${origin}/readyz`)).ok, 30_000, `the host (${host.stderr})`);
  const { body: login } = await api(origin, "POST", "/auth/login", { username: ADMIN.username, password: ADMIN.password });
  const token = login.token;
  const { body: hostStatus } = await api(origin, "GET", "/lan/status", undefined, token);
  const link = hostStatus.pairing_links.find((l) => l.includes(HOST_IP)) ?? hostStatus.pairing_links[0];
  const { body: created } = await api(origin, "POST", "/apps", { name: "Tea Shop", identity_verification: "off", allowed_origins: [] }, token);
  const session = await (await fetch(`http://${hostPublic}/api/v1/visitor/sessions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ app_key: created.app.app_key, name: "李雷" }),
  })).json();
  const say = async (id) => {
    const res = await fetch(`http://${hostPublic}/api/v1/visitor/messages`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${session.token}` },
      body: JSON.stringify({ client_msg_id: id, content: `消息 ${id}` }),
    });
    assert.equal(res.status, 201, await res.text());
  };
  await say("a1");

  // The other computer joins as a peer.
  const peerDir = tempDir();
  const pairing = run(["lan", "pair", "--link", link, "--name", "Back office", "--data-dir", peerDir], "pair");
  const code = await until(() => /pairing code: (\d{3} ?\d{3})/.exec(pairing.stdout)?.[1], 20_000, `the code (${pairing.stderr})`);
  const { body: listed } = await api(origin, "GET", "/lan/devices", undefined, token);
  const device = listed.devices.find((d) => d.status === "pending");
  assert.equal((await api(origin, "POST", `/lan/devices/${device.device_id}/approve`, { code }, token)).status, 200);
  await until(() => pairing.proc.exitCode === 0, 20_000, "lan pair to end");
  assert.equal((await api(origin, "PUT", `/lan/devices/${device.device_id}/standby`, { enabled: true }, token)).status, 200);
  const peerHttp = `${STANDBY_IP}:${await portOn(STANDBY_IP)}`;
  const peer = run(["serve", "--data-dir", peerDir, "--bind", peerHttp, "--peer-of", hostLan, "--durability", "os"], "peer");
  const peerOrigin = `http://${peerHttp}`;
  await until(async () => (await fetch(`${peerOrigin}/readyz`)).ok, 30_000, `the peer (${peer.stderr})`);

  // Its admin switches the copy on in its own Settings → LAN.
  const context = await browser.newContext({ locale: "en-US", viewport: { width: 1280, height: 1000 } });
  const page = await context.newPage();
  const problems = watchPage(page, "peer-admin");
  await signIn(page, peerOrigin, ADMIN.username, ADMIN.password);
  await page.goto(`${peerOrigin}/#/settings/lan`);
  const panel = page.locator("[data-testid=lan-copy]");
  await panel.waitFor({ timeout: 10_000 });
  assert.equal(await panel.getAttribute("data-state"), "off");
  await panel.locator("[data-testid=lan-copy-switch]").check();
  for (const id of ["a2", "a3", "a4"]) await say(id);
  await until(async () => (await panel.getAttribute("data-state")) === "following", 30_000, `the copy following (${peer.stderr})`);
  const { body: followed } = await api(peerOrigin, "GET", "/lan/copy", undefined, token);
  assert.equal(followed.enabled, true);
  await until(async () => (await panel.locator("[data-testid=lan-copy-progress]").innerText()).includes("Copy at log entry"), 10_000, "the progress");
  assert.equal(await page.locator("[data-testid=lan-takeover]").count(), 0, "no take-over while the host answers");
  await until(async () => {
    const { body } = await api(peerOrigin, "GET", "/lan/copy", undefined, token);
    const { body: st } = await api(origin, "GET", "/lan/status", undefined, token);
    return body.applied_seq === st.log_seq;
  }, 20_000, "the copy caught up");
  // Sessions reach the copy's SQLite with its next snapshot (5 s).
  await new Promise((r) => setTimeout(r, 5500));

  // The host dies.
  host.proc.kill("SIGKILL");
  const takeoverPanel = page.locator("[data-testid=lan-takeover-panel]");
  await takeoverPanel.waitFor({ timeout: 30_000 });
  assert.match(await takeoverPanel.locator("[data-testid=lan-takeover-behind]").innerText(), /this copy was 0 log entries behind it/);
  assert.match(await takeoverPanel.innerText(), /What may be missing after taking over/);
  await page.locator("[data-testid=lan-takeover]").click();
  assert.match(await page.getByRole("alertdialog").innerText(), /Take over the shop\? This computer becomes the shop's host/);
  const bindField = page.locator("[data-testid=lan-takeover-bind]");
  assert.equal(await bindField.inputValue(), "0.0.0.0:5339");
  await bindField.fill("not:an:address");
  await page.locator("[data-testid=lan-takeover-yes]").click();
  await page.locator("[data-testid=lan-copy-error]").waitFor();
  assert.match(await page.locator("[data-testid=lan-copy-error]").innerText(), /IP:PORT/);
  await page.locator("[data-testid=lan-copy]").screenshot({ path: shot("lan-takeover-confirm") });
  copyFileSync(shot("lan-takeover-confirm"), resolve(import.meta.dirname, "../../docs/lan-takeover-peer.png"));
  const peerLan = `${STANDBY_IP}:${await portOn(STANDBY_IP)}`;
  await bindField.fill(peerLan);
  const asked = Date.now();
  await page.locator("[data-testid=lan-takeover-yes]").click();
  await page.locator("[data-testid=lan-takeover-outcome]").waitFor({ timeout: 20_000 });
  assert.match(await page.locator("[data-testid=lan-takeover-outcome]").innerText(), /took the shop over \(term \d+; 0 log entries were missing/);
  // The server comes back as the host on the same address, and the page reloads by itself:
  // the host's LAN tab, with its copies, and no copy panel (this computer is no peer now).
  const nowStatus = await until(async () => {
    const { status, body } = await api(peerOrigin, "GET", "/lan/status", undefined, token);
    return status === 200 && body.role === "host" && body;
  }, 60_000, `the peer serving as the host (${peer.stderr})`);
  const hostAgain = Date.now() - asked;
  await until(async () => (await page.locator("[data-testid=lan-copy]").count()) === 0
    && (await page.locator("[data-testid=lan-standbys]").count()) === 1, 60_000, "the page reloaded on the host");
  const back = Date.now() - asked;
  assert.equal(nowStatus.listening, peerLan);
  assert.equal(peer.proc.exitCode, null, "the same process serves the shop");
  const { body: messages } = await api(peerOrigin, "GET", `/conversations/${session.conversation_id}/messages`, undefined, token);
  assert.deepEqual(messages.messages.filter((m) => m.sender.type === "visitor").map((m) => m.client_msg_id), ["a1", "a2", "a3", "a4"]);
  console.log(`take-over from the peer's tab: serving as the host after ${hostAgain} ms, page reloaded after ${back} ms`);
  assert.deepEqual(problems.filter((p) => !/pageerror: Failed to fetch/.test(p)), []);
  await context.close();
});
