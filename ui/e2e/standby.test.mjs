// Settings → LAN on a host, for an admin, against real processes (issue
// 18, docs/LAN.md "From the desktop"): a host (`serve --lan-bind`) on
// 127.0.0.2, a paired computer (`lan pair`, approved with its code) whose
// `lan standby` runs on 127.0.0.3. In the browser the admin switches
// "Keep a copy of the shop on this computer" on (and off and on again),
// watches the standby's lag come down to "up to date" as a visitor writes,
// is refused a malformed address, and hands the shop over with the
// confirm dialog: the outcome names the new term, the standby serves the
// shop with the visitor's messages, the old host shows where the shop
// went. A screenshot of the tab goes to docs/.
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

  // The other computer pairs (its user runs `lan pair`), an admin approves with its code.
  const standbyDir = tempDir();
  const pairing = run(["lan", "pair", "--link", link, "--name", "Back office", "--data-dir", standbyDir], "pair");
  const code = await until(() => /pairing code: (\d{3} ?\d{3})/.exec(pairing.stdout)?.[1], 20_000, `the code (${pairing.stderr})`);
  const { body: listed } = await api(origin, "GET", "/lan/devices", undefined, token);
  const device = listed.devices.find((d) => d.status === "pending");
  assert.ok(device, JSON.stringify(listed));
  const approved = await api(origin, "POST", `/lan/devices/${device.device_id}/approve`, { code }, token);
  assert.equal(approved.status, 200, JSON.stringify(approved.body));
  await until(() => pairing.proc.exitCode !== null, 20_000, "lan pair to end");
  assert.equal(pairing.proc.exitCode, 0, pairing.stderr);

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
  const ids = messages.messages.map((m) => m.client_msg_id).filter(Boolean);
  assert.deepEqual(ids, ["m1", "m2", "m3", "m4", "m5", "m6"]);
  console.log(`handover from the tab: answered in ${answered} ms, pause ${/paused for (\d+) ms/.exec(await outcome.innerText())[1]} ms`);

  // The same tab in Chinese, on the old host: where the shop went.
  const zh = await browser.newContext({ locale: "zh-CN", viewport: { width: 1280, height: 900 } });
  const zhPage = await zh.newPage();
  problems.push(...watchPage(zhPage, "admin-zh"));
  await signIn(zhPage, origin, ADMIN.username, ADMIN.password).catch(() => {});
  await zhPage.goto(`${origin}/#/settings/lan`);
  await zhPage.locator("[data-testid=lan-superseded]").waitFor({ timeout: 10_000 });
  assert.match(await zhPage.locator("[data-testid=lan-superseded]").innerText(), /店铺已转到 Back office/);
  assert.deepEqual(problems, []);
  copyFileSync(shot("lan-standbys-host"), resolve(import.meta.dirname, "../../docs/lan-standbys-host.png"));
  await zh.close();
  await context.close();
});
