// Kefu Assist in the browser, against a real server: a visitor on a shop's
// page gets the FAQ bot's "did you mean…" as buttons, picks one, gets the
// answer with 👍/👎, rates it 👎 and the chat goes to the agents' queue; the
// agent sees the bot's turns with their confidence. In Chinese, as most
// shops' visitors write.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startServer, launchBrowser, watchPage, startShopPage, signIn, until, shot } from "./harness.mjs";

let server, browser, shop, app, visitorPage, agentPage, problems;

before(async () => {
  server = await startServer();
  browser = await launchBrowser();
  ({ app } = await server.api("POST", "/apps", { name: "Tea Shop", identity_verification: "off", allowed_origins: [] }, server.adminToken));
  for (const [questions, answer] of [
    [["怎么退货", "如何申请退货"], "在订单页点“申请售后”即可退货。"],
    [["运费多少", "包邮吗"], "满 99 元包邮。"],
    [["退款多久到账"], "原路退回，1-3 个工作日到账。"],
  ]) {
    await server.api("POST", "/faq_entries", { app_id: app.id, questions, answer }, server.adminToken);
  }
  await server.api("PATCH", `/apps/${app.id}/assist`, { mode: "always", suggest_threshold: 0.2 }, server.adminToken);
  shop = await startShopPage(server.origin, app.app_key);
  const visitorCtx = await browser.newContext({ locale: "zh-CN", viewport: { width: 1280, height: 800 } });
  const agentCtx = await browser.newContext({ locale: "zh-CN", viewport: { width: 1366, height: 800 } });
  visitorPage = await visitorCtx.newPage();
  agentPage = await agentCtx.newPage();
  problems = { visitor: watchPage(visitorPage, "visitor"), agent: watchPage(agentPage, "agent") };
});

after(async () => {
  await browser?.close();
  await shop?.close();
  await server?.stop();
});

const widget = () => visitorPage.frameLocator('iframe[title="Kefu chat"]');

test("choices are buttons, a pick answers, 👎 hands off, the agent sees the confidence", async () => {
  await visitorPage.goto(shop.url);
  await visitorPage.locator("#kefu-launcher").click();
  const composer = widget().locator("textarea[data-testid=composer]");
  await composer.fill("退货退款");
  await composer.press("Enter");

  const choices = widget().locator("[data-testid=assist-choices]");
  await choices.waitFor();
  await assert.doesNotReject(widget().getByText("您是想问：").first().waitFor());
  const buttons = choices.getByRole("button");
  assert.ok((await buttons.count()) >= 2, "at least two choices");
  const picked = (await buttons.nth(1).textContent())?.trim() ?? "";
  await visitorPage.screenshot({ path: shot("assist-widget-choices") });
  await buttons.nth(1).click();

  // The pick is sent as the visitor's message, and the bot answers it.
  const rating = widget().locator("[data-testid=assist-rating]");
  await rating.waitFor();
  const { conversations } = await server.api("GET", "/conversations?status=pending", undefined, server.adminToken);
  const id = conversations[0].id;
  const { messages } = await server.api("GET", `/conversations/${id}/messages`, undefined, server.adminToken);
  const pick = messages.find((m) => m.sender.type === "visitor" && m.content === picked);
  assert.ok(pick?.meta?.assist_choice, "the pick carries the entry id");
  const answer = messages.find((m) => m.meta?.assist?.kind === "answer");
  assert.equal(answer.meta.assist.matched_by, "choice");

  await rating.getByRole("button", { name: "没有帮助，转人工" }).click();
  await widget().getByText("感谢您的反馈").waitFor();
  await until(
    async () => (await server.api("GET", `/conversations/${id}`, undefined, server.adminToken)).conversation.status === "queued",
    10_000,
    "hand-off to the queue",
  );
  await visitorPage.screenshot({ path: shot("assist-widget-rated") });

  // The agent sees every bot turn with how sure it was.
  await signIn(agentPage, server.origin, "owner", "owner-pass-1");
  await agentPage.goto(`${server.origin}/#/chats/${id}`);
  const lines = agentPage.locator("[data-testid=assist-line]");
  await until(async () => (await lines.count()) >= 3, 10_000, "three bot turns");
  const texts = await lines.allTextContents();
  assert.ok(texts.some((t) => t.includes("候选问题")), texts.join(" | "));
  assert.ok(texts.some((t) => t.includes("100%") && t.includes("已回答")), texts.join(" | "));
  assert.ok(texts.some((t) => t.includes("转人工") && t.includes("👎")), texts.join(" | "));
  await agentPage.screenshot({ path: shot("assist-agent-thread") });

  // Settings: the FAQ and the mode, for admins.
  await agentPage.goto(`${server.origin}/#/settings/assist`);
  const rows = agentPage.locator("[data-testid=faq-list] tbody tr");
  await until(async () => (await rows.count()) === 3, 10_000, "three FAQ rows");
  assert.equal(await agentPage.locator("[data-testid=assist-mode]").inputValue(), "always");
  await agentPage.locator("[data-testid=faq-editor] textarea").first().fill("发票怎么开\n可以开发票吗");
  await agentPage.locator("[data-testid=faq-editor] textarea").nth(1).fill("下单时填写发票抬头。");
  await agentPage.locator("[data-testid=faq-editor] button[type=submit]").click();
  await until(async () => (await rows.count()) === 4, 10_000, "the new entry");
  const { faq_entries } = await server.api("GET", `/faq_entries?app_id=${app.id}`, undefined, server.adminToken);
  assert.deepEqual(faq_entries.at(-1).questions, ["发票怎么开", "可以开发票吗"]);
  await agentPage.screenshot({ path: shot("assist-settings") });
  assert.deepEqual([...problems.visitor, ...problems.agent], []);
});
