// A new shop's first minute (issue 22), in a browser against a real server:
// the owner signs in with no chats and lands on the queue, where a shop of
// one is shown the way to a second agent; the first website's "Send a test
// message" opens the demo page with the real widget, and the message sent
// there arrives in the queue; after a claim the chat list previews what the
// visitor said, not the "joined" event line after it; signing in again
// lands on the chats, where the work now is.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startServer, launchBrowser, watchPage, signIn, ADMIN, until, shot } from "./harness.mjs";

let server, browser, ctx, page, problems, app;

before(async () => {
  server = await startServer();
  browser = await launchBrowser();
  ({ app } = await server.api("POST", "/apps", { name: "Tea Shop", identity_verification: "off", allowed_origins: [] }, server.adminToken));
  // Chats wait in the queue for a claim; the owner is online so the widget is open.
  await server.api("PATCH", "/routing", { auto_assign: false }, server.adminToken);
  ctx = await browser.newContext({ locale: "en-US", viewport: { width: 1366, height: 800 } });
  page = await ctx.newPage();
  problems = watchPage(page, "agent");
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

const hash = () => page.evaluate(() => location.hash);

test("with no chats the owner lands on the queue, with the way to a second agent", async () => {
  await signIn(page, server.origin, ADMIN.username, ADMIN.password);
  await until(async () => (await hash()) === "#/queue", 10_000, "landing on the queue");
  const hint = page.locator("[data-testid=add-agent-hint]");
  await hint.waitFor();
  assert.match(await hint.textContent(), /only agent/);
  assert.match(await hint.textContent(), /Settings → LAN/);
  await page.locator("[data-testid=add-agent-link]").click();
  await until(async () => (await hash()) === "#/settings/agents", 10_000, "agents tab");
});

test("'Send a test message' opens the demo page; its widget's message arrives in the queue", async () => {
  await server.api("POST", "/agents/me/status", { status: "online" }, server.adminToken);
  await page.goto(`${server.origin}/#/settings/apps`);
  await page.locator(`li button[data-app-id="${app.id}"]`).click();
  const link = page.locator("[data-testid=demo-link]");
  await link.waitFor();
  assert.equal(await link.getAttribute("href"), `${server.origin}/widget/demo.html?app_key=${app.app_key}`);
  const [demo] = await Promise.all([ctx.waitForEvent("page"), link.click()]);
  const demoProblems = watchPage(demo, "demo");
  await demo.waitForLoadState();
  assert.match(await demo.locator("h1").textContent(), /Tea Shop/);
  await demo.locator("#kefu-launcher").click();
  const composer = demo.frameLocator('iframe[title="Kefu chat"]').locator("textarea[data-testid=composer]");
  await composer.fill("hello from the demo page");
  await composer.press("Enter");
  await demo.screenshot({ path: shot("firstminute-demo") });
  await page.locator('[data-nav="queue"]').click();
  const row = page.locator("[data-testid=queue-item]", { hasText: "hello from the demo page" });
  await row.waitFor({ timeout: 15_000 });
  await page.screenshot({ path: shot("firstminute-queue") });
  await demo.close();
  assert.deepEqual(demoProblems, []);
});

test("after a claim the chat list shows what the visitor said, not the event line", async () => {
  const row = page.locator("[data-testid=queue-item]", { hasText: "hello from the demo page" });
  const id = await row.getAttribute("data-conversation-id");
  await row.locator("[data-testid=claim]").click();
  await until(async () => (await hash()) === `#/chats/${id}`, 10_000, "the claimed chat opens");
  // The log's head is now the "assigned" event line.
  const { conversation } = await server.api("GET", `/conversations/${id}`, undefined, server.adminToken);
  assert.equal(conversation.last_message.kind, "event");
  const item = page.locator(`[data-testid=chat-item][data-conversation-id="${id}"]`);
  await item.waitFor();
  await until(async () => /hello from the demo page/.test(await item.locator(".preview").textContent()), 10_000, "preview");
  assert.doesNotMatch(await item.locator(".preview").textContent(), /joined|assigned/i);
});

test("signed in again with no page chosen, the owner lands on the chats", async () => {
  await page.getByRole("button", { name: /Sign out|退出/ }).click();
  await page.goto(`${server.origin}/`);
  await signIn(page, server.origin, ADMIN.username, ADMIN.password);
  await until(async () => (await hash()) === "#/chats", 10_000, "landing on the chats");
  // A page in the address is the agent's choice and is kept.
  await page.getByRole("button", { name: /Sign out|退出/ }).click();
  await page.goto(`${server.origin}/#/tickets`);
  await page.getByLabel(/Username|用户名/).fill(ADMIN.username);
  await page.getByLabel(/Password|密码/).fill(ADMIN.password);
  await page.getByRole("button", { name: /Sign in|登录/ }).click();
  await page.locator("[data-live=open]").waitFor({ timeout: 15_000 });
  await page.waitForTimeout(500);
  assert.equal(await hash(), "#/tickets");
});

test("nothing went wrong in the page", () => {
  assert.deepEqual(problems, []);
});
