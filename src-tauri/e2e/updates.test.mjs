// Updates from the shop's own server, end to end (docs/DESKTOP.md,
// "Updates"): the real app (Tauri's updater plugin, its HTTP client, its
// signature check) against a real HTTP server on 127.0.0.1 that serves a
// latest.json and an artifact signed with a minisign key made for this run.
//
//  1. Updates off (no address; then an address with "check on start" off):
//     the app makes no request at all, and says updates are off.
//  2. The address typed in Settings → Updates, Check now: the version and
//     the notes show; nothing is downloaded before the agent says yes.
//  3. A tampered artifact: Install, yes → refused with the signature
//     message; the installed copy is untouched.
//  4. The good artifact: Install, yes → the plugin replaces the installed
//     copy. That copy is a stand-in AppImage in a temp dir (APPIMAGE points
//     to it), never the binary under test.
//  5. "Check on start" on, restart: the app checks by itself and shows the
//     update (a banner), and installs nothing.
//
// Keys are made here with Node's Ed25519 in minisign's format (what
// `tauri signer generate` writes): no private key lives in the repository.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash, generateKeyPairSync, randomBytes, sign } from "node:crypto";
import { createServer } from "node:http";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { WebDriver } from "./webdriver.mjs";
import { stopApps } from "./procs.mjs";
import { api, freePort, startDriver, waitHttp } from "./harness.mjs";

const BIN = process.env.KEFU_DESKTOP_BIN;
const OWNER = { username: "owner", password: "correct horse battery" };
const b64 = (buf) => Buffer.from(buf).toString("base64");

/** A minisign key pair; `pubkey` as the updater plugin wants it. */
function minisignKey() {
  const { publicKey, privateKey } = generateKeyPairSync("ed25519");
  const raw = Buffer.from(publicKey.export({ format: "jwk" }).x, "base64url");
  const id = randomBytes(8);
  const idHex = Buffer.from(id).reverse().toString("hex").toUpperCase();
  const file = `untrusted comment: minisign public key: ${idHex}\n${b64(Buffer.concat([Buffer.from("Ed"), id, raw]))}\n`;
  return { id, idHex, privateKey, pubkey: b64(file) };
}

/** The `.sig` of `data` (prehashed, as minisign and the Tauri CLI sign), base64 as in latest.json. */
function minisignSign(key, data, fileName) {
  const hash = createHash("blake2b512").update(data).digest();
  const sig = sign(null, hash, key.privateKey);
  const trusted = `timestamp:${Math.floor(Date.now() / 1000)}\tfile:${fileName}`;
  const global = sign(null, Buffer.concat([sig, Buffer.from(trusted)]), key.privateKey);
  const file = `untrusted comment: signature from tauri secret key\n${b64(Buffer.concat([Buffer.from("ED"), key.id, sig]))}\ntrusted comment: ${trusted}\n${b64(global)}\n`;
  return b64(file);
}

/** The shop's update server: serves what `site` holds, counts requests. */
async function updateServer() {
  const site = { manifest: null, artifact: Buffer.alloc(0) };
  const requests = [];
  const server = createServer((req, res) => {
    requests.push(req.url);
    if (req.url === "/kefu/latest.json" && site.manifest) {
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify(site.manifest));
    } else if (req.url === "/kefu/Kefu_0.2.0_amd64.AppImage") {
      res.writeHead(200, { "content-type": "application/octet-stream", "content-length": site.artifact.length });
      res.end(site.artifact);
    } else {
      res.writeHead(404).end();
    }
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  const base = `http://127.0.0.1:${server.address().port}`;
  return { site, requests, base, close: () => new Promise((r) => server.close(r)) };
}

function writePrefs(configDir, updates) {
  mkdirSync(configDir, { recursive: true });
  const lines = ["[updates]"];
  for (const [k, v] of Object.entries(updates)) lines.push(`${k} = ${JSON.stringify(v)}`);
  writeFileSync(join(configDir, "desktop.toml"), `${lines.join("\n")}\n`);
}

test("desktop updates: off by default, found and shown, bad signature refused, installed only after yes", { timeout: 300000 }, async () => {
  assert.ok(BIN, "KEFU_DESKTOP_BIN is set");
  const home = mkdtempSync(join(tmpdir(), "kefu-desktop-upd-"));
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  // The installed copy the updater may replace: a stand-in, never BIN.
  const installed = join(home, "Kefu.AppImage");
  const oldBytes = Buffer.from("the installed Kefu 0.1.0\n");
  writeFileSync(installed, oldBytes, { mode: 0o755 });
  const env = {
    KEFU_DESKTOP_DATA_DIR: join(home, "data"),
    KEFU_DESKTOP_CONFIG_DIR: join(home, "config"),
    KEFU_DESKTOP_PORT: String(port),
    KEFU_DESKTOP_MDNS_BROWSE: "off",
    APPIMAGE: installed,
    LANG: "en_US.UTF-8",
  };
  const key = minisignKey();
  const shop = await updateServer();
  const url = `${shop.base}/kefu/latest.json`;
  const goodBytes = Buffer.concat([Buffer.from("the new Kefu 0.2.0\n"), randomBytes(64 * 1024)]);
  const notes = "Faster chat list.\n修复：通知。";
  const manifest = (signature) => ({
    version: "0.2.0",
    notes,
    pub_date: "2026-12-07T12:00:00Z",
    platforms: { "linux-x86_64": { url: `${shop.base}/kefu/Kefu_0.2.0_amd64.AppImage`, signature } },
  });
  shop.site.manifest = manifest(minisignSign(key, goodBytes, "Kefu_0.2.0_amd64.AppImage"));
  shop.site.artifact = goodBytes;

  let driver;
  let wd;
  const launch = async () => {
    driver = await startDriver(env);
    wd = new WebDriver(driver.url);
    await wd.start(BIN);
    await waitHttp(`${base}/healthz`);
  };
  const close = async () => {
    await wd.quit().catch(() => {});
    driver.child.kill();
    await stopApps(env.KEFU_DESKTOP_DATA_DIR);
    await new Promise((r) => setTimeout(r, 1000));
  };
  const signIn = async () => {
    await wd.waitFor("#login-username, nav", 30000);
    if ((await wd.findAll("#login-username")).length) {
      await wd.type(await wd.find("#login-username"), OWNER.username);
      await wd.type(await wd.find("#login-password"), OWNER.password);
      await wd.click(await wd.find('button[type="submit"]'));
      await wd.waitFor("nav", 30000);
    }
  };
  const updatesTab = async () => {
    await wd.exec("location.hash = arguments[0]", ["#/settings/updates"]);
    await wd.waitFor('[data-testid="updates-status"]');
  };
  try {
    // 1. Off: only the shop's key in desktop.toml, no address.
    writePrefs(env.KEFU_DESKTOP_CONFIG_DIR, { pubkey: key.pubkey });
    await launch();
    await wd.type(await wd.waitFor('[data-testid="setup-username"]'), OWNER.username);
    await wd.type(await wd.find('[data-testid="setup-password"]'), OWNER.password);
    await wd.type(await wd.find('[data-testid="setup-password-again"]'), OWNER.password);
    await wd.click(await wd.find('[data-testid="setup-create-owner"]'));
    await wd.waitFor('[data-testid="app-create"] input');
    const token = (await api(base, "POST", "/auth/login", null, OWNER)).token;
    await api(base, "POST", "/apps", token, { name: "My shop" });
    await wd.exec("location.reload()");
    await signIn();
    await updatesTab();
    await wd.waitFor('[data-testid="updates-off"]');
    assert.match(await wd.text(await wd.find('[data-testid="updates-key"]')), new RegExp(key.idHex), "the shop's key ID shows");
    assert.equal((await wd.findAll('[data-testid="updates-check"]')).length, 0, "no Check now without an address");
    await close();
    // An address, but "check on start" off: still no request at start.
    writePrefs(env.KEFU_DESKTOP_CONFIG_DIR, { pubkey: key.pubkey, url, check_on_start: false });
    await launch();
    await signIn();
    await new Promise((r) => setTimeout(r, 3000));
    assert.deepEqual(shop.requests, [], "nothing is fetched while updates are off or not asked for");
    assert.equal((await wd.findAll('[data-testid="update-banner"]')).length, 0);

    // 2. The address saved from the page (the key cannot be), Check now.
    await updatesTab();
    const field = await wd.waitFor('[data-testid="updates-url"]');
    await wd.clear(field);
    await wd.type(field, "ftp://elsewhere.example/latest.json");
    await wd.click(await wd.find('[data-testid="updates-save"]'));
    await wd.until("a bad address is refused", async () => (await wd.findAll('[data-testid="updates-error"]')).length > 0);
    await wd.clear(field);
    await wd.type(field, url);
    await wd.click(await wd.find('[data-testid="updates-save"]'));
    await wd.waitFor('[data-testid="updates-saved"]');
    const saved = readFileSync(join(env.KEFU_DESKTOP_CONFIG_DIR, "desktop.toml"), "utf8");
    assert.ok(saved.includes(url) && saved.includes(key.pubkey), "desktop.toml keeps the address and the shop's key");
    await wd.click(await wd.find('[data-testid="updates-check"]'));
    const found = await wd.waitFor('[data-testid="updates-found"]');
    assert.equal(await wd.exec(`return document.querySelector('[data-testid="updates-found"]').dataset.version`), "0.2.0");
    assert.match(await wd.text(found), /Kefu 0\.2\.0 is available \(you have 0\.1\.0\)/);
    assert.equal(await wd.text(await wd.find('[data-testid="updates-notes"]')), notes);
    assert.deepEqual(shop.requests, ["/kefu/latest.json"], "checked, nothing downloaded yet");

    // 3. A tampered artifact (same signature, other bytes): refused.
    shop.site.artifact = Buffer.concat([Buffer.from("the new Kefu 0.2.0, tampered\n"), randomBytes(64 * 1024)]);
    await wd.click(await wd.find('[data-testid="updates-install"]'));
    await wd.click(await wd.waitFor('[data-testid="updates-install-yes"]'));
    const refused = await wd.waitFor('[data-testid="updates-error"]', 60000);
    assert.match(await wd.text(refused), /signature does not match this shop's key\. Nothing was installed\./);
    assert.deepEqual(readFileSync(installed), oldBytes, "the installed copy is untouched");
    assert.equal(shop.requests.filter((r) => r.endsWith(".AppImage")).length, 1);

    // A signature by another key over the good bytes: refused too.
    const stranger = minisignKey();
    shop.site.artifact = goodBytes;
    shop.site.manifest = manifest(minisignSign(stranger, goodBytes, "Kefu_0.2.0_amd64.AppImage"));
    await wd.click(await wd.find('[data-testid="updates-check"]'));
    await wd.waitFor('[data-testid="updates-found"]');
    await wd.click(await wd.find('[data-testid="updates-install"]'));
    await wd.click(await wd.waitFor('[data-testid="updates-install-yes"]'));
    await wd.until("the stranger's signature is refused", async () =>
      (await wd.findAll('[data-testid="updates-error"]')).length > 0 && /signature does not match/.test(await wd.text(await wd.find('[data-testid="updates-error"]'))), 60000);
    assert.deepEqual(readFileSync(installed), oldBytes, "still untouched");

    // 4. The shop's signature: installed after yes, into the stand-in copy.
    shop.site.manifest = manifest(minisignSign(key, goodBytes, "Kefu_0.2.0_amd64.AppImage"));
    await wd.click(await wd.find('[data-testid="updates-check"]'));
    await wd.waitFor('[data-testid="updates-found"]');
    await wd.click(await wd.find('[data-testid="updates-install"]'));
    await wd.click(await wd.waitFor('[data-testid="updates-install-yes"]'));
    await wd.waitFor('[data-testid="updates-installed"]', 60000);
    assert.deepEqual(readFileSync(installed), goodBytes, "the new version replaced the installed copy");
    assert.equal((await fetch(`${base}/healthz`)).status, 200, "the running app was not stopped");
    await close();

    // 5. Check on start: the app checks by itself and only shows it.
    writeFileSync(installed, oldBytes, { mode: 0o755 });
    const checkBox = () => wd.find('[data-testid="updates-check-on-start"]');
    writePrefs(env.KEFU_DESKTOP_CONFIG_DIR, { pubkey: key.pubkey, url, check_on_start: false });
    await launch();
    await signIn();
    await updatesTab();
    await wd.click(await checkBox());
    await wd.click(await wd.find('[data-testid="updates-save"]'));
    await wd.waitFor('[data-testid="updates-saved"]');
    await close();
    const before = shop.requests.length;
    await launch();
    await signIn();
    const banner = await wd.waitFor('[data-testid="update-banner"]', 30000);
    assert.match(await wd.text(banner), /Kefu 0\.2\.0 is available/);
    assert.deepEqual(shop.requests.slice(before), ["/kefu/latest.json"], "one check at start, no download");
    assert.deepEqual(readFileSync(installed), oldBytes, "nothing installed without a yes");
    await close();
  } finally {
    await stopApps(env.KEFU_DESKTOP_DATA_DIR);
    await shop.close();
    rmSync(home, { recursive: true, force: true });
  }
});
