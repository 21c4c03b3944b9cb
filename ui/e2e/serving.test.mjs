// kefu-server serves its embedded UI with the right headers, and the
// browser enforces them: the workstation cannot be framed, the widget's
// frame only by the app's allowed origins, and pages run under a strict CSP.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startServer, launchBrowser, watchPage, startShopPage, signIn, ADMIN } from "./harness.mjs";

let server;
let browser;
before(async () => {
  server = await startServer();
  browser = await launchBrowser();
});
after(async () => {
  await browser?.close();
  await server?.stop();
});

test("the workstation page: CSP, no framing, gzip, ETag", async () => {
  const res = await fetch(`${server.origin}/`, { headers: { "accept-encoding": "gzip" } });
  assert.equal(res.status, 200);
  assert.match(res.headers.get("content-type"), /^text\/html/);
  const csp = res.headers.get("content-security-policy");
  assert.match(csp, /script-src 'self'(;|$)/);
  assert.match(csp, /frame-ancestors 'none'/);
  assert.doesNotMatch(csp, /unsafe-eval/);
  assert.equal(res.headers.get("x-frame-options"), "DENY");
  assert.equal(res.headers.get("content-encoding"), "gzip");
  const html = await res.text(); // fetch decodes gzip
  assert.match(html, /<div id="app">/);
  const etag = res.headers.get("etag");
  const again = await fetch(`${server.origin}/`, { headers: { "if-none-match": etag } });
  assert.equal(again.status, 304);
  // A script the page loads is cached for good (content-hashed name).
  const script = html.match(/src="(\/assets\/[^"]+\.js)"/)[1];
  const js = await fetch(`${server.origin}${script}`);
  assert.equal(js.status, 200);
  assert.match(js.headers.get("cache-control"), /immutable/);
  assert.match(js.headers.get("content-type"), /javascript/);
  assert.equal((await fetch(`${server.origin}/assets/nope.js`)).status, 404);
});

test("widget.js and the widget frame's framing policy per app", async () => {
  const js = await fetch(`${server.origin}/widget.js`);
  assert.equal(js.status, 200);
  assert.match(js.headers.get("content-type"), /javascript/);
  assert.equal(js.headers.get("cross-origin-resource-policy"), "cross-origin");

  const { app: open } = await server.api("POST", "/apps", { name: "Open", identity_verification: "off", allowed_origins: [] }, server.adminToken);
  const { app: strict } = await server.api("POST", "/apps", {
    name: "Strict",
    identity_verification: "off",
    allowed_origins: ["https://shop.example", "http://127.0.0.2:9"],
  }, server.adminToken);
  const frameOpen = await fetch(`${server.origin}/widget/frame.html?app_key=${open.app_key}`);
  assert.equal(frameOpen.status, 200);
  assert.match(frameOpen.headers.get("content-security-policy"), /frame-ancestors \*/);
  assert.equal(frameOpen.headers.get("x-frame-options"), null);
  const frameStrict = await fetch(`${server.origin}/widget/frame.html?app_key=${strict.app_key}`);
  assert.match(frameStrict.headers.get("content-security-policy"), /frame-ancestors https:\/\/shop\.example http:\/\/127\.0\.0\.2:9(;|$)/);
});

test("the browser frames the widget only on the app's allowed origins", async () => {
  const { freePort } = await import("./harness.mjs");
  const allowedPort = await freePort();
  const { app } = await server.api("POST", "/apps", {
    name: "Only one shop",
    identity_verification: "off",
    allowed_origins: [`http://127.0.0.2:${allowedPort}`],
  }, server.adminToken);
  const iframe = `<iframe title="probe" src="${server.origin}/widget/frame.html?app_key=${app.app_key}"></iframe>`;
  const rendersFrame = async (shop) => {
    const page = await browser.newPage();
    try {
      await page.goto(shop.url);
      await page.waitForTimeout(1000);
      const frame = page.frames().find((f) => f.url().includes("/widget/frame.html"));
      if (!frame) return false;
      return await frame.evaluate(() => !!document.getElementById("app")).catch(() => false);
    } finally {
      await page.close();
      await shop.close();
    }
  };
  assert.equal(await rendersFrame(await startShopPage(server.origin, app.app_key, { body: iframe, port: allowedPort })), true);
  assert.equal(await rendersFrame(await startShopPage(server.origin, app.app_key, { body: iframe })), false);
});

test("the frame's own requests are same-origin; another site's are refused", async () => {
  const { app } = await server.api("POST", "/apps", {
    name: "Strict2",
    identity_verification: "off",
    allowed_origins: ["https://shop.example"],
  }, server.adminToken);
  const own = await fetch(`${server.origin}/api/v1/visitor/sessions`, {
    method: "POST",
    headers: { "content-type": "application/json", origin: server.origin },
    body: JSON.stringify({ app_key: app.app_key }),
  });
  assert.equal(own.status, 201);
  const foreign = await fetch(`${server.origin}/api/v1/visitor/sessions`, {
    method: "POST",
    headers: { "content-type": "application/json", origin: "https://evil.example" },
    body: JSON.stringify({ app_key: app.app_key }),
  });
  assert.equal(foreign.status, 403);
  assert.equal((await foreign.json()).error.code, "forbidden");
});

test("sign-in page works under the CSP; a wrong password says so", async () => {
  const context = await browser.newContext({ locale: "en-US" });
  const page = await context.newPage();
  const problems = watchPage(page, "agent");
  await page.goto(`${server.origin}/`);
  await page.getByLabel("Username").fill(ADMIN.username);
  await page.getByLabel("Password").fill("wrong-password");
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("alert").filter({ hasText: /Wrong username or password/ }).waitFor();
  await signIn(page, server.origin, ADMIN.username, ADMIN.password);
  // The token is in sessionStorage only: a reload keeps the session.
  await page.reload();
  await page.locator("[data-live=open]").waitFor();
  const stored = await page.evaluate(() => ({ local: JSON.stringify(localStorage), session: Object.keys(sessionStorage) }));
  assert.doesNotMatch(stored.local, /kf_/);
  assert.deepEqual(problems, []);
  await context.close();
});

test("zh-CN browsers get the Chinese UI", async () => {
  const context = await browser.newContext({ locale: "zh-CN" });
  const page = await context.newPage();
  await page.goto(`${server.origin}/`);
  await page.getByRole("button", { name: "登录" }).waitFor();
  assert.equal(await page.getAttribute("html", "lang"), "zh-CN");
  await context.close();
});
