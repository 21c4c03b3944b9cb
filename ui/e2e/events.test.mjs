// Event lines ("Amy joined the conversation") in the reader's language:
// a zh-CN visitor and an English one write from a shop's page, routing
// gives both chats to Amy, and each widget words the "joined" line in its
// own language from the message's meta; a transfer to a team (whose name
// looks like markup) reads in Chinese and stays text. The workstation, in
// Chinese, words the same lines in Chinese in the thread (its chat list
// previews what the visitor said instead), while the stored `content`
// stays English for API clients.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startServer, launchBrowser, watchPage, startShopPage, signIn, until, shot } from "./harness.mjs";

const AMY = { username: "amy", password: "amy-pass-123", display_name: "Amy Lin" };
const TEAM = "售后 <i>VIP</i>";

let server, browser, shop, amy, amyToken, team;
const chats = {};

before(async () => {
  server = await startServer();
  browser = await launchBrowser();
  const admin = server.adminToken;
  const { app } = await server.api("POST", "/apps", { name: "Tea Shop", identity_verification: "off", allowed_origins: [] }, admin);
  ({ agent: amy } = await server.api("POST", "/agents", { ...AMY, role: "agent" }, admin));
  ({ team } = await server.api("POST", "/teams", { name: TEAM }, admin));
  ({ token: amyToken } = await server.api("POST", "/auth/login", { username: AMY.username, password: AMY.password }));
  // Amy online and routing on (the default): a new chat is hers at once.
  await server.api("POST", "/agents/me/status", { status: "online" }, amyToken);
  shop = await startShopPage(server.origin, app.app_key);
});

after(async () => {
  await browser?.close();
  await shop?.close();
  await server?.stop();
});

/** The texts of the event lines in a widget or thread, in order. */
function eventLines(root) {
  return root.locator("[data-testid=message][data-kind=event]").evaluateAll((els) => els.map((e) => e.textContent?.trim() ?? ""));
}

const VISITORS = [
  { locale: "zh-CN", tag: "zh", text: "你好，龙井还有货吗？", joined: "Amy Lin 已加入对话" },
  { locale: "en-US", tag: "en", text: "Hello, is the Longjing in stock?", joined: "Amy Lin joined the conversation" },
];

for (const v of VISITORS) {
  test(`a visitor in ${v.locale} reads the "joined" line in ${v.tag === "zh" ? "Chinese" : "English"}`, async () => {
    const context = await browser.newContext({ locale: v.locale, viewport: { width: 1280, height: 800 } });
    const page = await context.newPage();
    const problems = watchPage(page, `widget-${v.tag}`);
    await page.goto(shop.url);
    await page.locator("#kefu-launcher").click();
    const frame = page.frameLocator('iframe[title="Kefu chat"]');
    const composer = frame.locator("textarea[data-testid=composer]");
    await composer.fill(v.text);
    await composer.press("Enter");
    await frame.locator("[data-testid=message]:not([data-pending])", { hasText: v.text }).waitFor();
    await frame.locator("[data-testid=message][data-kind=event]").first().waitFor();
    assert.deepEqual(await eventLines(frame), [v.joined]);

    // The store keeps English for API clients; the meta carries the name.
    // (The list's derived fields may lag the log by a moment.)
    const chat = await until(async () => {
      const { conversations } = await server.api("GET", "/conversations?assignee=me", undefined, amyToken);
      return conversations.find((c) => c.last_message?.kind === "event" && !Object.values(chats).includes(c.id));
    }, 10_000, "the chat routed to Amy");
    chats[v.tag] = chat.id;
    const { messages } = await server.api("GET", `/conversations/${chat.id}/messages`, undefined, amyToken);
    const event = messages.find((m) => m.kind === "event");
    assert.equal(event.content, "Amy Lin joined the conversation");
    assert.deepEqual(event.meta, { event: "assigned", agent_id: amy.id, agent_name: "Amy Lin", by: "auto" });

    if (v.tag === "zh") {
      // A transfer to a team whose name looks like markup: Chinese, and text.
      await server.api("POST", `/conversations/${chat.id}/transfer`, { team_id: team.id }, amyToken);
      await until(async () => (await eventLines(frame)).length === 2, 10_000, "the transfer line");
      assert.deepEqual(await eventLines(frame), [v.joined, `Amy Lin 已将对话转接给 ${TEAM} 团队`]);
      assert.equal(await frame.locator("[data-kind=event] i").count(), 0, "a name was parsed as HTML");
    }
    await page.waitForTimeout(300);
    await page.screenshot({ path: shot(`widget-event-${v.tag}`) });
    assert.deepEqual(problems, []);
    await context.close();
  });
}

test("the workstation words the same lines in its own language", async () => {
  assert.ok(chats.zh && chats.en, "both visitors' chats exist");
  const context = await browser.newContext({ locale: "zh-CN", viewport: { width: 1366, height: 800 } });
  const page = await context.newPage();
  const problems = watchPage(page, "agent-zh");
  await signIn(page, server.origin, AMY.username, AMY.password);
  // The English visitor's chat: its last message is the "joined" line; the
  // list previews what the visitor said before it (issue 22), not the event.
  const item = page.locator(`[data-testid=chat-item][data-conversation-id="${chats.en}"] .preview`);
  await until(async () => (await item.textContent())?.trim() === "Hello, is the Longjing in stock?", 10_000, "the list preview: the visitor's words");
  await page.goto(`${server.origin}/#/chats/${chats.en}`);
  await page.locator("[data-testid=message]", { hasText: "Longjing" }).waitFor();
  await page.locator("[data-testid=message][data-kind=event]").first().waitFor();
  const lines = await page.locator("[data-testid=message][data-kind=event] span").evaluateAll((els) => els.map((e) => e.textContent?.trim()));
  assert.deepEqual(lines, ["Amy Lin 已加入对话"]);
  await page.screenshot({ path: shot("agent-event-zh") });
  assert.deepEqual(problems, []);
  await context.close();
});
