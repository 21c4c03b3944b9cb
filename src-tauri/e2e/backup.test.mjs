// End-to-end test of Settings → Backup in the real desktop app (docs/DESKTOP.md,
// "Backups"): the owner chooses a backup folder and backs up now; the backup
// is listed in the window and is on disk with its manifest. A schedule
// restarts the embedded server with it (its /metrics shows the interval). An agent is
// added after the backup; the owner picks the backup for "restore on next
// start" (the pending restore shows); the app quits and starts again: the
// backup was restored before the embedded server opened the data (the agent
// added after it is gone), the data from before is kept beside the data dir,
// and the tab says so. Saves a screenshot (docs/desktop-backup.png).
//
// Run by scripts/test-desktop (KEFU_DESKTOP_BIN, TAURI_DRIVER, a display, a
// D-Bus session with a secret store).
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { WebDriver } from "./webdriver.mjs";
import { stopApps } from "./procs.mjs";
import { api, freePort, startDriver, waitHttp } from "./harness.mjs";

const BIN = process.env.KEFU_DESKTOP_BIN;
const SCREENSHOT = process.env.KEFU_DESKTOP_BACKUP_SCREENSHOT ?? resolve(import.meta.dirname, "../../docs/desktop-backup.png");
const OWNER = { username: "owner", password: "correct horse battery" };

/** Signed in after a start: from the keyring, else through the login form. */
async function signedIn(wd) {
  await wd.waitFor('nav, #login-username', 30000);
  if ((await wd.findAll("#login-username")).length) {
    await wd.type(await wd.find("#login-username"), OWNER.username);
    await wd.type(await wd.find("#login-password"), OWNER.password);
    await wd.click(await wd.find('form[aria-labelledby="login-title"] button[type="submit"]'));
  }
  await wd.until("signed in", async () => (await wd.findAll('[data-tab="profile"], a[href="#/settings"]')).length > 0 || (await wd.exec("return location.hash")) !== "", 30000);
}

async function agentNames(base) {
  const token = (await api(base, "POST", "/auth/login", null, OWNER)).token;
  const { agents } = await api(base, "GET", "/agents", token);
  return agents.map((a) => a.username);
}

test("desktop backup: back up now, listed; restore on next start really restores, old data kept", { timeout: 300000 }, async () => {
  assert.ok(BIN, "KEFU_DESKTOP_BIN is set");
  const home = mkdtempSync(join(tmpdir(), "kefu-desktop-backup-"));
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const backups = join(home, "backups");
  const env = {
    KEFU_DESKTOP_DATA_DIR: join(home, "data"),
    KEFU_DESKTOP_CONFIG_DIR: join(home, "config"),
    KEFU_DESKTOP_PORT: String(port),
    KEFU_DESKTOP_MDNS_BROWSE: "off",
    LANG: "en_US.UTF-8",
  };
  const driver = await startDriver(env);
  const wd = new WebDriver(driver.url);
  try {
    // 1. First start: the owner and a first app.
    await wd.start(BIN);
    await waitHttp(`${base}/healthz`);
    await wd.type(await wd.waitFor('[data-testid="setup-username"]'), OWNER.username);
    await wd.type(await wd.find('[data-testid="setup-password"]'), OWNER.password);
    await wd.type(await wd.find('[data-testid="setup-password-again"]'), OWNER.password);
    await wd.click(await wd.find('[data-testid="setup-create-owner"]'));
    await wd.type(await wd.waitFor('[data-testid="app-create"] input'), "My shop");
    await wd.click(await wd.find('[data-testid="app-create"] button[type="submit"]'));
    await wd.click(await wd.waitFor('[data-testid="setup-done"]'));

    // 2. Settings → Backup: a folder that is inside the data dir is refused.
    await wd.exec("location.hash = arguments[0]", ["#/settings/backup"]);
    const dirField = await wd.waitFor('[data-testid="backup-dir"]');
    await wd.type(dirField, join(env.KEFU_DESKTOP_DATA_DIR, "backups"));
    await wd.click(await wd.find('[data-testid="backup-save"]'));
    await wd.until("the folder inside the data is refused", async () => {
      const error = await wd.findAll('[data-testid="backup-error"]');
      return error.length > 0 && (await wd.text(error[0])).includes("data folder");
    });
    assert.ok(!existsSync(join(env.KEFU_DESKTOP_DATA_DIR, "backups")), "nothing created inside the data");
    // A folder apart from it is saved; then "Back up now".
    await wd.clear(dirField);
    await wd.type(dirField, backups);
    await wd.click(await wd.find('[data-testid="backup-save"]'));
    await wd.waitFor('[data-testid="backup-notice"]');
    await wd.click(await wd.waitFor('[data-testid="backup-now"]:not([disabled])'));
    await wd.waitFor('[data-testid="backup-row"]', 60000);
    const path = await wd.exec('return document.querySelector("[data-testid=backup-row]").dataset.path');
    assert.ok(path.startsWith(join(backups, "kefu-backup-")), path);
    assert.ok(existsSync(join(path, "manifest.json")), "the backup is on disk with its manifest");
    const last = await wd.find('[data-testid="backup-last"]');
    assert.equal(await wd.exec('return document.querySelector("[data-testid=backup-last]").dataset.ok'), "true");
    assert.match(await wd.text(last), /done/);

    // 3. Written after the backup: an agent.
    const token = (await api(base, "POST", "/auth/login", null, OWNER)).token;
    await api(base, "POST", "/agents", token, { username: "later", password: "correct horse later", display_name: "Later" });
    assert.ok((await agentNames(base)).includes("later"));

    // 3b. A schedule: the embedded server restarts with it (the page
    // reloads) and its scheduler runs: /metrics says every hour.
    await wd.click(await wd.find('[data-testid="backup-scheduled"]'));
    await wd.waitFor('[data-testid="backup-interval"]');
    await wd.exec('const s = document.querySelector("[data-testid=backup-interval]"); s.value = "60"; s.dispatchEvent(new Event("change"));');
    await wd.clear(await wd.find('[data-testid="backup-keep"]'));
    await wd.type(await wd.find('[data-testid="backup-keep"]'), "3");
    await wd.click(await wd.find('[data-testid="backup-save"]'));
    await wd.until("the server runs the schedule", async () => {
      const metrics = await fetch(`${base}/metrics`).then((r) => r.text()).catch(() => "");
      return /^kefu_backup_interval_seconds 3600$/m.test(metrics);
    }, 30000);
    await wd.waitFor('[data-testid="backup-scheduled"]', 30000);
    await wd.until("the schedule is kept", async () => (await wd.exec('return document.querySelector("[data-testid=backup-scheduled]")?.checked')) === true, 30000);
    assert.match(readFileSync(join(env.KEFU_DESKTOP_CONFIG_DIR, "desktop.toml"), "utf8"), /scheduled = true[\s\S]*interval_minutes = 60[\s\S]*keep = 3/);

    // 4. Restore on next start: the pending restore shows.
    await wd.click(await wd.find('[data-testid="backup-restore"]'));
    await wd.click(await wd.waitFor('[data-testid="backup-restore-yes"]'));
    await wd.waitFor('[data-testid="backup-pending"]');
    writeFileSync(SCREENSHOT, await wd.screenshot());

    // 5. Quit and start again.
    await wd.quit();
    await stopApps(env.KEFU_DESKTOP_DATA_DIR);
    await wd.start(BIN);
    await waitHttp(`${base}/healthz`);
    const names = await agentNames(base);
    assert.ok(names.includes("owner") && !names.includes("later"), `restored: ${names}`);
    const kept = readdirSync(home).filter((n) => n.startsWith("data.before-restore-"));
    assert.equal(kept.length, 1, `old data kept beside: ${readdirSync(home)}`);
    assert.ok(existsSync(join(home, kept[0], "kefu.sqlite3")));
    await signedIn(wd);
    await wd.exec("location.hash = arguments[0]", ["#/settings/backup"]);
    const restored = await wd.waitFor('[data-testid="backup-restored"]');
    assert.equal(await wd.exec('return document.querySelector("[data-testid=backup-restored]").dataset.ok'), "true");
    assert.ok((await wd.text(restored)).includes(kept[0]), "the tab names where the old data is");
    assert.equal((await wd.findAll('[data-testid="backup-pending"]')).length, 0, "used up");
  } finally {
    await wd.quit();
    driver.child.kill();
    const left = await stopApps(env.KEFU_DESKTOP_DATA_DIR);
    if (left > 0) console.log(`# ${left} app process(es) outlived the WebDriver session; stopped`);
    rmSync(home, { recursive: true, force: true });
  }
});
