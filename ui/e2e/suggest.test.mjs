// Reply suggestions in the browser, against a real server: while a chat is
// open the composer offers the shop's canned reply that fits the visitor's
// message (rendered for this visitor) and a reply agents sent in two
// earlier chats (masked); inserting the canned one and sending it labels
// the stored message with meta.canned_id. In Chinese, as most shops write.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startServer, launchBrowser, watchPage, signIn, until, shot } from "./harness.mjs";

let server, browser, app, agentPage, problems, invoiceId;

async function visitor(name) {
  const res = await fetch(`${server.origin}/api/v1/visitor/sessions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ app_key: app.app_key, name }),
  });
  assert.equal(res.status, 201);
  return res.json();
}

async function visitorSays(v, id, content) {
  return server.api("POST", "/visitor/messages", { client_msg_id: id, content }, v.token);
}

before(async () => {
  server = await startServer();
  browser = await launchBrowser();
  ({ app } = await server.api("POST", "/apps", { name: "Tea Shop", identity_verification: "off", allowed_origins: [] }, server.adminToken));
  ({ canned_reply: { id: invoiceId } } = await server.api(
    "POST",
    "/canned_replies",
    { shortcut: "invoice", title: "开发票", shared: true, body: "{visitor.name|您}好，下单时在发票一栏填写抬头和税号即可开发票。" },
    server.adminToken,
  ));
  // Two customers were sent the same answer, each with their own number.
  for (const [name, phone] of [["王芳", "13800138000"], ["李雷", "13912345678"]]) {
    const v = await visitor(name);
    await visitorSays(v, "q1", "茶叶可以寄到国外吗");
    await server.api(
      "POST",
      `/conversations/${v.conversation_id}/messages`,
      { client_msg_id: "r1", content: `目前只寄港澳台，详情请拨打 ${phone}` },
      server.adminToken,
    );
    await server.api("POST", `/conversations/${v.conversation_id}/status`, { status: "resolved" }, server.adminToken);
  }
  agentPage = await (await browser.newContext({ locale: "zh-CN", viewport: { width: 1366, height: 800 } })).newPage();
  problems = watchPage(agentPage, "agent");
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

test("the composer suggests replies; inserting a canned one labels the message", async () => {
  const v = await visitor("陈静");
  await visitorSays(v, "v1", "请问茶叶能寄到国外吗");
  await signIn(agentPage, server.origin, "owner", "owner-pass-1");
  await agentPage.goto(`${server.origin}/#/chats/${v.conversation_id}`);

  // The learnt reply, masked, once the learner has read the two chats.
  const suggestions = agentPage.locator("[data-testid=suggestions]");
  const learnt = suggestions.locator("[data-testid=suggestion][data-source=learnt]");
  await until(
    async () => {
      if ((await learnt.count()) > 0) return true;
      await agentPage.reload();
      await agentPage.locator("[data-testid=composer]").waitFor();
      await agentPage.waitForTimeout(300);
      return false;
    },
    20_000,
    "a learnt suggestion",
  );
  const learntText = (await learnt.first().textContent()) ?? "";
  assert.match(learntText, /常用回复/);
  assert.match(learntText, /目前只寄港澳台，详情请拨打 \[电话\]/);
  assert.doesNotMatch(await suggestions.innerText(), /13800138000|13912345678/);
  await agentPage.screenshot({ path: shot("suggest-learnt") });

  // The visitor asks about an invoice: the canned reply comes first.
  const composer = agentPage.locator("[data-testid=composer]");
  await composer.fill("稍等");
  await composer.press("Enter");
  await visitorSays(v, "v2", "可以开发票吗");
  const canned = suggestions.locator("[data-testid=suggestion][data-source=canned]").first();
  await canned.waitFor({ timeout: 10_000 });
  assert.match((await canned.textContent()) ?? "", /快捷回复.*陈静好，下单时在发票一栏/);
  await agentPage.screenshot({ path: shot("suggest-canned") });
  await canned.click();
  assert.equal(await composer.inputValue(), "陈静好，下单时在发票一栏填写抬头和税号即可开发票。");
  await assert.rejects(suggestions.waitFor({ timeout: 500 }), "inserting hides the suggestions");
  await composer.press("Enter");

  const sent = await until(async () => {
    const { messages } = await server.api("GET", `/conversations/${v.conversation_id}/messages`, undefined, server.adminToken);
    return messages.find((m) => m.sender.type === "agent" && m.content.startsWith("陈静好"));
  }, 10_000, "the sent reply");
  assert.equal(sent.meta.canned_id, invoiceId);
  const { messages } = await server.api("GET", `/conversations/${v.conversation_id}/messages`, undefined, server.adminToken);
  const plain = messages.find((m) => m.content === "稍等");
  assert.equal(plain.meta.canned_id, undefined, "a typed reply carries no canned id");

  // The `/` popup labels its reply too.
  await visitorSays(v, "v3", "发票抬头写什么");
  await composer.fill("/inv");
  await agentPage.locator("[data-testid=canned-item]").first().click();
  // The pick is rendered by the server first; Enter before that would pick again.
  await until(async () => (await composer.inputValue()).startsWith("陈静好"), 10_000, "the popup's pick in the composer");
  await composer.press("Enter");
  await until(async () => {
    const { messages } = await server.api("GET", `/conversations/${v.conversation_id}/messages`, undefined, server.adminToken);
    return messages.filter((m) => m.meta?.canned_id === invoiceId).length === 2;
  }, 10_000, "the popup's reply labelled");
  assert.deepEqual(problems, []);
});
