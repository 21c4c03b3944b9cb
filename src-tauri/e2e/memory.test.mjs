// Idle memory of the desktop app, before and after its memory profile, in
// one run (docs/DESKTOP.md, "Memory"): the same binary on the same data dir
// (an owner with ten chats, all open in the list, one in the thread view),
// launched first with KEFU_DESKTOP_MEMORY=server (the headless server's
// store sizes, Tauri's default runtime, WebKit's default cache model: what
// the app was before) and then with the desktop profile; after 10 s idle,
// the RSS of every process of the app. Prints the table as JSON.
//
// Not part of the default run (it launches the app twice more): set
// KEFU_DESKTOP_MEMORY_AB=1, e.g. `KEFU_DESKTOP_MEMORY_AB=1 scripts/test-desktop`.
// More launches to compare, each with its own environment on top of the
// desktop profile: KEFU_DESKTOP_MEMORY_VARIANTS='{"arena2":{"MALLOC_ARENA_MAX":"2"}}'.
// Each figure has RSS and PSS per process, anonymous vs file-backed
// memory, and kefu-desktop's largest mappings (procs.mjs).
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { WebDriver } from "./webdriver.mjs";
import { appMemory, stopApps } from "./procs.mjs";
import { api, freePort, startDriver, waitHttp } from "./harness.mjs";

const BIN = process.env.KEFU_DESKTOP_BIN;
const OWNER = { username: "owner", password: "correct horse battery" };

async function launch(env, profile, extra = {}) {
  const driver = await startDriver({ ...env, KEFU_DESKTOP_MEMORY: profile, ...extra });
  const wd = new WebDriver(driver.url);
  await wd.start(BIN);
  return { driver, wd };
}

async function close({ driver, wd }, dataDir) {
  await wd.quit().catch(() => {});
  driver.child.kill();
  await stopApps(dataDir);
  await new Promise((r) => setTimeout(r, 1000));
}

test("idle memory with ten open chats: server profile vs desktop profile", { skip: process.env.KEFU_DESKTOP_MEMORY_AB !== "1" && "set KEFU_DESKTOP_MEMORY_AB=1", timeout: 300000 }, async () => {
  assert.ok(BIN, "KEFU_DESKTOP_BIN is set");
  const home = mkdtempSync(join(tmpdir(), "kefu-desktop-mem-"));
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const env = {
    KEFU_DESKTOP_DATA_DIR: join(home, "data"),
    KEFU_DESKTOP_CONFIG_DIR: join(home, "config"),
    KEFU_DESKTOP_PORT: String(port),
    LANG: "en_US.UTF-8",
  };
  const figures = {};
  try {
    // The data: the owner through the first-start screen, an app, ten chats.
    let app = await launch(env, "server");
    await waitHttp(`${base}/healthz`);
    await app.wd.type(await app.wd.waitFor('[data-testid="setup-username"]'), OWNER.username);
    await app.wd.type(await app.wd.find('[data-testid="setup-password"]'), OWNER.password);
    await app.wd.type(await app.wd.find('[data-testid="setup-password-again"]'), OWNER.password);
    await app.wd.click(await app.wd.find('[data-testid="setup-create-owner"]'));
    await app.wd.waitFor('[data-testid="app-create"] input');
    const token = (await api(base, "POST", "/auth/login", null, OWNER)).token;
    const { app: shop } = await api(base, "POST", "/apps", token, { name: "My shop" });
    const me = (await api(base, "GET", "/agents/me", token)).agent;
    await api(base, "PATCH", `/agents/${me.id}`, token, { max_concurrent: 20 }).catch(() => {});
    let first;
    for (let i = 0; i < 10; i++) {
      const v = await api(base, "POST", "/visitor/sessions", null, { app_key: shop.app_key, name: `Visitor ${i + 1}` });
      await api(base, "POST", "/visitor/messages", v.token, { client_msg_id: `m-${i}`, content: `Question number ${i + 1}: is the oolong in stock?` });
      const { conversation } = await api(base, "GET", `/conversations/${v.conversation_id}`, token);
      if (!conversation.assignee_id) await api(base, "POST", `/conversations/${v.conversation_id}/claim`, token).catch(() => {});
      first ??= v.conversation_id;
    }
    await close(app, env.KEFU_DESKTOP_DATA_DIR);

    const variants = [
      ["server", "server", {}],
      ["desktop", "desktop", {}],
      ...Object.entries(JSON.parse(process.env.KEFU_DESKTOP_MEMORY_VARIANTS ?? "{}")).map(([name, extra]) => [name, "desktop", extra]),
    ];
    for (const [name, profile, extra] of variants) {
      app = await launch(env, profile, extra);
      await waitHttp(`${base}/healthz`);
      // Signed in from the keyring (remember me), else through the form.
      await app.wd.waitFor('#login-username, nav', 30000);
      if ((await app.wd.findAll("#login-username")).length) {
        await app.wd.type(await app.wd.find("#login-username"), OWNER.username);
        await app.wd.type(await app.wd.find("#login-password"), OWNER.password);
        await app.wd.click(await app.wd.find('button[type="submit"]'));
        await app.wd.waitFor("nav", 30000);
      }
      await app.wd.exec("location.hash = arguments[0]", [`#/chats/${encodeURIComponent(first)}`]);
      await app.wd.until("ten chats listed", async () => (await app.wd.findAll('[data-testid="chat-item"]')).length >= 10, 30000);
      await app.wd.until("the thread shows", async () => (await app.wd.text(await app.wd.find('[data-testid="messages"]'))).includes("Question number 1"));
      await new Promise((r) => setTimeout(r, 10000));
      figures[name] = appMemory(env.KEFU_DESKTOP_DATA_DIR);
      await close(app, env.KEFU_DESKTOP_DATA_DIR);
    }
    console.log(`desktop memory A/B: ${JSON.stringify(figures)}`);
    assert.ok(figures.desktop.total_mb > 0 && figures.server.total_mb > 0);
  } finally {
    await stopApps(env.KEFU_DESKTOP_DATA_DIR);
    rmSync(home, { recursive: true, force: true });
  }
});
