// End-to-end harness: a real kefu-server (the binary cargo built, serving
// its embedded UI) on a temp data dir, Debian's Chromium driven by
// playwright-core, a TCP proxy that can cut the network, and a third-party
// page on another origin that embeds the widget.
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, mkdirSync, writeFileSync } from "node:fs";
import { createServer as createNetServer, connect } from "node:net";
import { createServer as createHttpServer } from "node:http";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { chromium } from "playwright-core";

const repo = resolve(import.meta.dirname, "../..");
export const outDir = resolve(import.meta.dirname, "out");
mkdirSync(outDir, { recursive: true });

export function serverBin() {
  if (process.env.E2E_SERVER_BIN) return process.env.E2E_SERVER_BIN;
  const target = process.env.CARGO_TARGET_DIR ?? join(repo, "target");
  return join(target, "debug", "kefu-server");
}

export async function freePort() {
  return new Promise((ok, fail) => {
    const srv = createNetServer();
    srv.on("error", fail);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => ok(port));
    });
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Waits until `check()` returns a truthy value (or throws after `ms`). */
export async function until(check, ms = 10_000, what = "condition") {
  const end = Date.now() + ms;
  let last;
  while (Date.now() < end) {
    try {
      last = await check();
      if (last) return last;
    } catch (err) {
      last = err;
    }
    await sleep(50);
  }
  throw new Error(`timed out waiting for ${what}: ${last instanceof Error ? last.message : JSON.stringify(last)}`);
}

export const ADMIN = { username: "owner", password: "owner-pass-1", display_name: "Owner" };

/** Starts kefu-server with an admin; returns helpers to call its API. */
/** A kefu-server on a fresh data dir; `env` adds settings (KEFU_SECTION__KEY). */
export async function startServer({ env = {} } = {}) {
  const dataDir = mkdtempSync(join(tmpdir(), "kefu-e2e-"));
  const bin = serverBin();
  const made = spawnSync(bin, ["admin", "create", "--data-dir", dataDir, "--username", ADMIN.username,
    "--password", ADMIN.password, "--display-name", ADMIN.display_name], { encoding: "utf8" });
  if (made.status !== 0) throw new Error(`admin create failed: ${made.stderr}`);
  const port = await freePort();
  const proc = spawn(bin, ["serve", "--data-dir", dataDir, "--bind", `127.0.0.1:${port}`, "--durability", "os"], {
    stdio: ["ignore", "ignore", "pipe"],
    env: { ...process.env, KEFU_PRESENCE__AWAY_GRACE_SECS: "3600", ...env },
  });
  let stderr = "";
  proc.stderr.on("data", (d) => (stderr += d));
  const origin = `http://127.0.0.1:${port}`;
  await until(async () => (await fetch(`${origin}/readyz`)).ok, 20_000, `kefu-server on ${port} (${stderr})`);
  const api = async (method, path, body, token) => {
    const headers = {};
    if (token) headers.authorization = `Bearer ${token}`;
    let payload;
    if (body instanceof FormData) payload = body;
    else if (body !== undefined) {
      headers["content-type"] = "application/json";
      payload = JSON.stringify(body);
    }
    const res = await fetch(`${origin}/api/v1${path}`, { method, headers, body: payload });
    const text = await res.text();
    const data = text ? JSON.parse(text) : null;
    if (!res.ok) throw new Error(`${method} ${path} → ${res.status} ${text}`);
    return data;
  };
  const { token: adminToken, agent: admin } = await api("POST", "/auth/login", {
    username: ADMIN.username,
    password: ADMIN.password,
  });
  return {
    origin,
    port,
    dataDir,
    api,
    adminToken,
    admin,
    get stderr() {
      return stderr;
    },
    async stop() {
      proc.kill("SIGTERM");
      await new Promise((r) => (proc.exitCode !== null ? r() : proc.once("exit", r)));
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** Debian's Chromium, headless, with the flags this closed network needs. */
export async function launchBrowser() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    headless: true,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--autoplay-policy=no-user-gesture-required",
    ],
  });
}

/** Collects what must never happen in a page: errors, CSP violations, dialogs. */
export function watchPage(page, label) {
  const problems = [];
  page.on("pageerror", (err) => problems.push(`${label} pageerror: ${err.message}`));
  page.on("console", (msg) => {
    if (msg.type() === "error" && /Content Security Policy|Refused to/.test(msg.text())) {
      problems.push(`${label} csp: ${msg.text()}`);
    }
  });
  page.on("dialog", (dialog) => {
    problems.push(`${label} dialog: ${dialog.message()}`);
    void dialog.dismiss();
  });
  return problems;
}

/**
 * A TCP proxy in front of the server: `cut()` drops every connection and
 * refuses new ones (the network is gone), `restore()` lets them through.
 */
export async function startProxy(targetPort) {
  const port = await freePort();
  const sockets = new Set();
  let down = false;
  const srv = createNetServer((client) => {
    if (down) {
      client.destroy();
      return;
    }
    const upstream = connect(targetPort, "127.0.0.1");
    sockets.add(client);
    sockets.add(upstream);
    client.pipe(upstream);
    upstream.pipe(client);
    const end = () => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on("error", end);
    upstream.on("error", end);
    client.on("close", end);
    upstream.on("close", end);
  });
  await new Promise((r) => srv.listen(port, "127.0.0.1", r));
  return {
    origin: `http://127.0.0.1:${port}`,
    port,
    cut() {
      down = true;
      for (const s of sockets) s.destroy();
      sockets.clear();
    },
    restore() {
      down = false;
    },
    close() {
      this.cut();
      return new Promise((r) => srv.close(r));
    },
  };
}

/** A shop's page on its own origin (127.0.0.2) that embeds the widget. */
export async function startShopPage(widgetOrigin, appKey, { extraHead = "", body = null, port: fixedPort } = {}) {
  const port = fixedPort ?? (await freePort());
  const html = `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Tea Shop</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{font-family:sans-serif;margin:40px;background:#fdf6ec} h1{color:#7a4b18}</style>${extraHead}</head>
<body><h1>Tea Shop</h1><p>Oolong, pu'er and green teas, shipped from Hangzhou.</p>
${body ?? `<script src="${widgetOrigin}/widget.js" data-app-key="${appKey}" async></script>`}</body></html>`;
  const srv = createHttpServer((req, res) => {
    res.writeHead(200, { "content-type": "text/html; charset=utf-8" });
    res.end(html);
  });
  await new Promise((r) => srv.listen(port, "127.0.0.2", r));
  return {
    url: `http://127.0.0.2:${port}/`,
    origin: `http://127.0.0.2:${port}`,
    close: () => new Promise((r) => srv.close(r)),
  };
}

/** Signs an agent in through the login screen. */
export async function signIn(page, origin, username, password) {
  await page.goto(`${origin}/`);
  await page.getByLabel(/Username|用户名/).fill(username);
  await page.getByLabel(/Password|密码/).fill(password);
  await page.getByRole("button", { name: /Sign in|登录/ }).click();
  await page.locator("[data-live=open]").waitFor({ timeout: 15_000 });
}

export function shot(name) {
  return join(outDir, `${name}.png`);
}

export function writeJson(name, data) {
  writeFileSync(join(outDir, name), JSON.stringify(data, null, 2));
}
