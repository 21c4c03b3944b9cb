// Screenshots of the main screens, in both languages, on a shop with some
// life in it; and the agent UI's time to first paint. Pictures go to
// e2e/out/ (the README's come from here); figures to e2e/out/metrics.json.
// This asserts that each screen renders its main parts, not how it looks.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startServer, launchBrowser, watchPage, startShopPage, signIn, until, shot, writeJson } from "./harness.mjs";

let server, browser, shop, app, convs;
const metrics = {};

const VISITORS = [
  { name: "李雷", email: "lilei@example.cn", attributes: { plan: "VIP", city: "杭州" }, lines: ["你好，我的订单 #20931 什么时候发货？", "我想改一下收货地址"] },
  { name: "Emma Wilson", email: "emma@example.com", attributes: { plan: "pro" }, lines: ["Hi! Do you ship Longjing tea to Canada?"] },
  { name: "王芳", email: null, attributes: {}, lines: ["退款什么时候到账？"] },
  { name: "Lucas Martin", email: "lucas@example.fr", attributes: { orders: 3 }, lines: ["Is the pu'er from 2015 still in stock?", "I'd take two cakes."] },
  { name: "张伟", email: "zw@example.cn", attributes: {}, lines: ["发票可以开公司抬头吗"] },
];

before(async () => {
  server = await startServer();
  browser = await launchBrowser();
  const admin = server.adminToken;
  ({ app } = await server.api("POST", "/apps", { name: "Tea Shop", identity_verification: "off", allowed_origins: [] }, admin));
  await server.api("PATCH", `/apps/${app.id}`, { welcome_message: "Hi! Ask us anything about our teas. 欢迎咨询！" }, admin);
  await server.api("PATCH", "/routing", { auto_assign: false }, admin);
  const { agent: bo } = await server.api("POST", "/agents", { username: "bo", password: "bo-pass-1234", display_name: "Bo Chen", role: "agent" }, admin);
  await server.api("POST", "/teams", { name: "Pre-sales" }, admin).catch(() => {});
  await server.api("POST", "/canned_replies", { shortcut: "ship", title: "Shipping times", body: "Hi {visitor.first_name|there}, orders ship within 24 hours from Hangzhou.", shared: true }, admin);
  await server.api("POST", "/agents/me/status", { status: "online" }, admin);
  convs = [];
  for (const [i, v] of VISITORS.entries()) {
    const session = await server.api("POST", "/visitor/sessions", { app_key: app.app_key, name: v.name, email: v.email ?? undefined, attributes: v.attributes });
    for (const [j, line] of v.lines.entries()) {
      await fetch(`${server.origin}/api/v1/visitor/messages`, {
        method: "POST",
        headers: { "content-type": "application/json", authorization: `Bearer ${session.token}` },
        body: JSON.stringify({ client_msg_id: `s${i}-${j}`, content: line, meta: { page_url: "https://tea.example/products/longjing", page_title: "Longjing — Tea Shop", user_agent: "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36", locale: "zh-CN" } }),
      });
    }
    convs.push(session.conversation_id);
  }
  // Two chats are the owner's, one is Bo's, the rest wait in the queue.
  await server.api("POST", `/conversations/${convs[0]}/claim`, {}, admin);
  await server.api("POST", `/conversations/${convs[1]}/claim`, {}, admin);
  await server.api("POST", `/conversations/${convs[1]}/messages`, { client_msg_id: "a1", content: "Yes! Shipping to Canada takes 7–10 days. https://tea.example/shipping" }, admin);
  await server.api("POST", `/conversations/${convs[0]}/messages`, { client_msg_id: "a2", content: "您好，订单今天下午发出，顺丰单号稍后发您。" }, admin);
  await server.api("POST", `/conversations/${convs[0]}/messages`, { client_msg_id: "n1", content: "老客户，地址改为西湖区文三路 90 号", private: true }, admin);
  await server.api("POST", `/conversations/${convs[3]}/assign`, { agent_id: bo.id }, admin);
  await server.api("POST", "/tickets", { subject: "修改收货地址 #20931", description: "客户要求改地址", priority: "high", conversation_id: convs[0] }, admin);
  await server.api("POST", "/tickets", { subject: "Refund for damaged tin", description: "Tin arrived dented.", priority: "normal" }, admin);
  await server.api("POST", "/tickets", { subject: "Wholesale price list", description: "Asks for a B2B price list.", priority: "low", assignee_id: bo.id }, admin);
  shop = await startShopPage(server.origin, app.app_key);
});

after(async () => {
  writeJson("metrics.json", metrics);
  await browser?.close();
  await shop?.close();
  await server?.stop();
});

for (const locale of ["en-US", "zh-CN"]) {
  const tag = locale === "zh-CN" ? "zh" : "en";
  test(`agent screens (${tag})`, async () => {
    const context = await browser.newContext({ locale, viewport: { width: 1440, height: 860 }, colorScheme: "light" });
    const page = await context.newPage();
    const problems = watchPage(page, `agent-${tag}`);
    await page.goto(`${server.origin}/`);
    const fcp = await page.evaluate(() => new Promise((resolve) => {
      const entry = performance.getEntriesByName("first-contentful-paint")[0];
      if (entry) return resolve(entry.startTime);
      new PerformanceObserver((list) => resolve(list.getEntries()[0].startTime)).observe({ type: "paint", buffered: true });
    }));
    metrics[`agent_first_contentful_paint_ms_${tag}`] = Math.round(fcp);
    await page.screenshot({ path: shot(`login-${tag}`) });
    const started = Date.now();
    await signIn(page, server.origin, "owner", "owner-pass-1");
    metrics[`agent_sign_in_to_live_ms_${tag}`] = Date.now() - started;

    await page.goto(`${server.origin}/#/chats/${convs[0]}`);
    await page.locator("[data-testid=message]", { hasText: "20931" }).waitFor();
    await page.locator("[data-testid=visitor-panel]").waitFor();
    await page.waitForTimeout(400);
    await page.screenshot({ path: shot(`chats-${tag}`) });

    await page.goto(`${server.origin}/#/queue`);
    await page.locator("[data-testid=queue-item]").first().waitFor();
    assert.ok((await page.locator("[data-testid=queue-item]").count()) >= 2);
    await page.screenshot({ path: shot(`queue-${tag}`) });

    await page.goto(`${server.origin}/#/tickets`);
    await page.locator("[data-testid=ticket-row]").first().waitFor();
    await page.screenshot({ path: shot(`tickets-${tag}`) });
    await page.goto(`${server.origin}/#/tickets/1`);
    await page.locator("[data-testid=ticket-detail]").waitFor();
    await page.waitForTimeout(300);
    await page.screenshot({ path: shot(`ticket-${tag}`) });

    await page.goto(`${server.origin}/#/settings/apps`);
    await page.locator("[data-testid=embed-snippet]").first().waitFor();
    await page.screenshot({ path: shot(`settings-apps-${tag}`) });
    assert.match(await page.locator("[data-testid=embed-snippet]").first().inputValue().catch(async () => page.locator("[data-testid=embed-snippet]").first().textContent()), new RegExp(`${app.app_key}`));

    // Dark theme, small laptop.
    await page.setViewportSize({ width: 1280, height: 720 });
    await page.emulateMedia({ colorScheme: "dark" });
    await page.goto(`${server.origin}/#/chats/${convs[1]}`);
    await page.locator("[data-testid=message]", { hasText: "Canada" }).first().waitFor();
    await page.waitForTimeout(300);
    await page.screenshot({ path: shot(`chats-dark-${tag}`) });
    assert.deepEqual(problems, []);
    await context.close();
  });

  test(`widget on a shop's page (${tag})`, async () => {
    const context = await browser.newContext({ locale, viewport: { width: 1280, height: 800 } });
    const page = await context.newPage();
    const problems = watchPage(page, `widget-${tag}`);
    await page.goto(shop.url);
    await page.locator("#kefu-launcher").click();
    const frame = page.frameLocator('iframe[title="Kefu chat"]');
    const composer = frame.locator("textarea[data-testid=composer]");
    await composer.fill(tag === "zh" ? "你好，龙井有现货吗？" : "Hello, is the Longjing in stock?");
    await composer.press("Enter");
    await frame.locator("[data-testid=message]:not([data-pending])").first().waitFor();
    const { conversations } = await server.api("GET", "/conversations?status=queued", undefined, server.adminToken);
    const mine = conversations.find((c) => c.last_message?.content.includes(tag === "zh" ? "龙井" : "Longjing"));
    await server.api("POST", `/conversations/${mine.id}/claim`, {}, server.adminToken);
    await server.api("POST", `/conversations/${mine.id}/messages`, { client_msg_id: `w-${tag}`, content: tag === "zh" ? "有的！今天下单明天发货。" : "Yes! Order today and it ships tomorrow." }, server.adminToken);
    await frame.locator("[data-testid=message]", { hasText: tag === "zh" ? "明天发货" : "ships tomorrow" }).waitFor();
    await page.waitForTimeout(300);
    await page.screenshot({ path: shot(`widget-${tag}`) });

    // A phone: the chat takes the whole screen.
    const phone = await browser.newContext({ locale, viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true, deviceScaleFactor: 2 });
    const mobile = await phone.newPage();
    await mobile.goto(shop.url);
    await mobile.locator("#kefu-launcher").click();
    const iframe = mobile.locator('iframe[title="Kefu chat"]');
    await until(async () => {
      const box = await iframe.boundingBox();
      return box && box.width >= 380 && box.height >= 800;
    }, 5_000, "a full-screen widget on a phone");
    await mobile.frameLocator('iframe[title="Kefu chat"]').locator("textarea[data-testid=composer]").waitFor();
    await mobile.screenshot({ path: shot(`widget-mobile-${tag}`) });
    await phone.close();
    assert.deepEqual(problems, []);
    await context.close();
  });
}
