// A visitor who types faster than the shop's message rate (issue 23 item 9):
// the widget says so in the visitor's language, holds the messages back, and
// sends them again when the server allows, in the order they were written,
// each stored once.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startServer, launchBrowser, watchPage, startShopPage, until, shot } from "./harness.mjs";

let server, browser, shop, page, problems, agentToken;

before(async () => {
  // One message a second after a burst of two: easy to exceed by typing.
  server = await startServer({
    env: { KEFU_LIMITS__VISITOR_MESSAGES_PER_SECOND: "1", KEFU_LIMITS__VISITOR_MESSAGE_BURST: "2" },
  });
  browser = await launchBrowser();
  const { app } = await server.api("POST", "/apps", { name: "Tea Shop", identity_verification: "off", allowed_origins: [] }, server.adminToken);
  await server.api("POST", "/agents", { username: "amy", password: "amy-pass-123", display_name: "Amy", role: "agent" }, server.adminToken);
  ({ token: agentToken } = await server.api("POST", "/auth/login", { username: "amy", password: "amy-pass-123" }));
  await server.api("POST", "/agents/me/status", { status: "online" }, agentToken);
  shop = await startShopPage(server.origin, app.app_key);
  const ctx = await browser.newContext({ locale: "zh-CN", viewport: { width: 1280, height: 800 } });
  page = await ctx.newPage();
  problems = watchPage(page, "visitor");
});

after(async () => {
  await browser?.close();
  await shop?.close();
  await server?.stop();
});

test("messages over the rate are held, explained in Chinese, and sent in order once each", async () => {
  await page.goto(shop.url);
  const widget = page.frameLocator('iframe[title="Kefu chat"]');
  await page.locator("#kefu-launcher").click();
  const composer = widget.locator("textarea[data-testid=composer]");
  await composer.waitFor({ timeout: 15_000 });
  const texts = ["第一条", "第二条", "第三条", "第四条", "第五条", "第六条"];
  for (const text of texts) {
    await composer.fill(text);
    await composer.press("Enter");
  }
  // The server refused some: the visitor reads why, in Chinese.
  await widget.locator("[data-failed]", { hasText: "发送太快了" }).first().waitFor({ timeout: 5_000 });
  await page.screenshot({ path: shot("widget-rate-limited") });
  // Then every message arrives, once, in the order written.
  const stored = async () => {
    const { conversations } = await server.api("GET", "/conversations", undefined, server.adminToken);
    if (conversations.length !== 1) return null;
    const { messages } = await server.api("GET", `/conversations/${conversations[0].id}/messages`, undefined, server.adminToken);
    return messages.filter((m) => m.sender.type === "visitor").map((m) => m.content);
  };
  await until(async () => (await stored())?.length === texts.length, 20_000, "every message stored");
  assert.deepEqual(await stored(), texts);
  await until(async () => (await widget.locator("[data-failed]").count()) === 0, 5_000, "no message left failed");
  assert.deepEqual(problems, []);
});
