// Kefu Assist's badges in the workstation, against a real server: once an
// app's intent model is trained, a visitor's complaint about a refund shows
// in the chat list as urgent (紧急, why in its title), with its predicted
// intent (and how sure, in the title) and its language; a calm chat in
// Traditional characters shows its own intent and zh-Hant and no urgent
// badge, and becomes urgent live when the visitor complains later. In
// Chinese, as most shops' agents read it; the English words are checked
// once too.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startServer, launchBrowser, watchPage, signIn, until, shot } from "./harness.mjs";

let server, browser, app;

const REFUND = ["我要退款", "怎么申请退款", "退款多久到账", "钱什么时候退回来", "退款申请没反应", "订单取消了钱退了吗", "能不能退款", "我要退钱", "refund my order", "退款到哪里了"];
const SHIPPING = ["什么时候发货", "快递到哪了", "物流信息怎么查", "怎么还没发货", "查一下快递", "发什么快递", "物流好慢", "几天能到", "where is my parcel", "包裹一直没动"];

async function visitor(name) {
  const res = await fetch(`${server.origin}/api/v1/visitor/sessions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ app_key: app.app_key, name }),
  });
  assert.equal(res.status, 201);
  return res.json();
}

const says = (v, id, content) => server.api("POST", "/visitor/messages", { client_msg_id: id, content }, v.token);
const chat = async (id) => (await server.api("GET", `/conversations/${id}`, undefined, server.adminToken)).conversation;

before(async () => {
  server = await startServer();
  browser = await launchBrowser();
  ({ app } = await server.api("POST", "/apps", { name: "Tea Shop", identity_verification: "off", allowed_origins: [] }, server.adminToken));
  for (const [name, examples] of [["退款", REFUND], ["物流", SHIPPING]]) {
    await server.api("POST", "/intents", { app_id: app.id, name, examples }, server.adminToken);
  }
  await server.api("POST", "/intents/train", { app_id: app.id }, server.adminToken);
  await until(async () => {
    const { model } = await server.api("GET", `/intents/model?app_id=${app.id}`, undefined, server.adminToken);
    return model.ready && !model.pending;
  }, 20_000, "the intent model");
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

test("urgency, intent and language badges on the chat list, live, in zh-CN and English", async () => {
  const angry = await visitor("王芳");
  await says(angry, "a1", "我要投诉！退款申请一个星期了钱还没退回来");
  const calm = await visitor("陳小姐");
  await says(calm, "c1", "請問我的快遞到哪裡了，物流一直沒有更新");
  // What the server decided (the badges must show exactly this).
  const angryChat = await until(async () => {
    const c = await chat(angry.conversation_id);
    return c.assist?.intent && c.priority === "urgent" && c;
  }, 10_000, "the complaint read");
  assert.equal(angryChat.assist.intent.name, "退款");
  assert.equal(angryChat.assist.language, "zh-Hans");
  assert.deepEqual(angryChat.assist.urgency, ["complaint"]);
  const calmChat = await until(async () => {
    const c = await chat(calm.conversation_id);
    return c.assist?.intent && c;
  }, 10_000, "the calm chat read");
  assert.equal(calmChat.assist.intent.name, "物流");
  assert.equal(calmChat.assist.language, "zh-Hant");
  assert.equal(calmChat.priority, "normal");

  const context = await browser.newContext({ locale: "zh-CN", viewport: { width: 1366, height: 800 } });
  const page = await context.newPage();
  const problems = watchPage(page, "agent-zh");
  await signIn(page, server.origin, "owner", "owner-pass-1");
  await page.goto(`${server.origin}/#/chats`);
  await page.getByRole("button", { name: "全部", exact: true }).click();
  const item = (id) => page.locator(`[data-testid=chat-item][data-conversation-id="${id}"]`);

  const urgent = item(angry.conversation_id).locator("[data-testid=urgent-badge]");
  await urgent.waitFor({ timeout: 10_000 });
  assert.equal((await urgent.textContent())?.trim(), "紧急");
  assert.equal(await urgent.getAttribute("title"), "投诉");
  const intent = item(angry.conversation_id).locator("[data-testid=intent-badge]");
  assert.equal((await intent.textContent())?.trim(), "退款");
  assert.equal(await intent.getAttribute("title"), `意图：退款（${angryChat.assist.intent.confidence.toFixed(2)}）`);
  assert.equal((await item(angry.conversation_id).locator("[data-testid=language-badge]").textContent())?.trim(), "zh-Hans");

  const calmItem = item(calm.conversation_id);
  await calmItem.waitFor();
  assert.equal((await calmItem.locator("[data-testid=intent-badge]").textContent())?.trim(), "物流");
  assert.equal((await calmItem.locator("[data-testid=language-badge]").textContent())?.trim(), "zh-Hant");
  assert.equal(await calmItem.locator("[data-testid=urgent-badge]").count(), 0, "a calm chat is not urgent");
  await page.screenshot({ path: shot("assist-badges-zh") });

  // Live: the calm visitor complains; the list shows it without a reload.
  await says(calm, "c2", "再不发货我就给差评");
  const calmUrgent = calmItem.locator("[data-testid=urgent-badge]");
  await calmUrgent.waitFor({ timeout: 10_000 });
  assert.equal(await calmUrgent.getAttribute("title"), "投诉");
  assert.equal((await calmItem.locator("[data-testid=intent-badge]").textContent())?.trim(), "物流", "the intent stays the session's first");
  assert.deepEqual(problems, []);
  await context.close();

  // The same badges in English.
  const enContext = await browser.newContext({ locale: "en-US", viewport: { width: 1366, height: 800 } });
  const en = await enContext.newPage();
  const enProblems = watchPage(en, "agent-en");
  await signIn(en, server.origin, "owner", "owner-pass-1");
  await en.goto(`${server.origin}/#/chats`);
  await en.getByRole("button", { name: "All", exact: true }).click();
  const enItem = en.locator(`[data-testid=chat-item][data-conversation-id="${angry.conversation_id}"]`);
  const enUrgent = enItem.locator("[data-testid=urgent-badge]");
  await enUrgent.waitFor({ timeout: 10_000 });
  assert.equal((await enUrgent.textContent())?.trim(), "Urgent");
  assert.equal(await enUrgent.getAttribute("title"), "a complaint");
  assert.equal(
    await enItem.locator("[data-testid=intent-badge]").getAttribute("title"),
    `Intent: 退款 (${angryChat.assist.intent.confidence.toFixed(2)})`,
  );
  await en.screenshot({ path: shot("assist-badges-en") });
  assert.deepEqual(enProblems, []);
  await enContext.close();
});
