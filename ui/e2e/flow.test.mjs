// The whole path a shop lives on, in two browsers against a real server:
// a visitor on a third-party page opens the widget and writes; an agent sees
// the chat in the queue, claims it and replies; the network drops on both
// sides and comes back, and nothing is missed or doubled on either screen;
// the agent makes a ticket from the chat; files go both ways.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import {
  startServer, launchBrowser, watchPage, startShopPage, startProxy, signIn, until, shot, writeJson,
} from "./harness.mjs";

// A 1×1 PNG.
const PNG = Buffer.from(
  "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==",
  "base64",
);

let server, browser, agentProxy, visitorProxy, shop, app, amy, amyToken;
let agentCtx, visitorCtx, agentPage, visitorPage, problems;

before(async () => {
  server = await startServer();
  browser = await launchBrowser();
  ({ app } = await server.api("POST", "/apps", { name: "Tea Shop", identity_verification: "off", allowed_origins: [] }, server.adminToken));
  // Chats wait for a claim; Amy is online so the widget is open for chat.
  await server.api("PATCH", "/routing", { auto_assign: false }, server.adminToken);
  ({ agent: amy } = await server.api("POST", "/agents", { username: "amy", password: "amy-pass-123", display_name: "Amy", role: "agent" }, server.adminToken));
  ({ token: amyToken } = await server.api("POST", "/auth/login", { username: "amy", password: "amy-pass-123" }));
  await server.api("POST", "/agents/me/status", { status: "online" }, amyToken);
  agentProxy = await startProxy(server.port);
  visitorProxy = await startProxy(server.port);
  shop = await startShopPage(visitorProxy.origin, app.app_key);
  agentCtx = await browser.newContext({ locale: "en-US", viewport: { width: 1366, height: 800 } });
  visitorCtx = await browser.newContext({ locale: "en-US", viewport: { width: 1280, height: 800 } });
  agentPage = await agentCtx.newPage();
  visitorPage = await visitorCtx.newPage();
  problems = [...[]];
  problems.agent = watchPage(agentPage, "agent");
  problems.visitor = watchPage(visitorPage, "visitor");
});

after(async () => {
  await browser?.close();
  await agentProxy?.close();
  await visitorProxy?.close();
  await shop?.close();
  await server?.stop();
});

const widget = () => visitorPage.frameLocator('iframe[title="Kefu chat"]');

/** Texts of the messages on a screen, in DOM order, with their seqs. */
async function thread(locatorRoot) {
  const items = locatorRoot.locator("[data-testid=message]:not([data-pending])");
  return items.evaluateAll((els) => els.map((e) => ({ seq: Number(e.getAttribute("data-seq")), text: e.textContent ?? "" })));
}

function assertOnceInOrder(messages, texts, side) {
  for (const text of texts) {
    const n = messages.filter((m) => m.text.includes(text)).length;
    assert.equal(n, 1, `${side}: "${text}" shown ${n} times`);
  }
  const seqs = messages.map((m) => m.seq);
  assert.deepEqual(seqs, [...seqs].sort((a, b) => a - b), `${side}: messages out of seq order`);
  assert.equal(new Set(seqs).size, seqs.length, `${side}: a seq shown twice`);
}

let conversationId;

test("a visitor writes from a shop's page; the agent claims and replies", async () => {
  await signIn(agentPage, agentProxy.origin, "amy", "amy-pass-123");
  await visitorPage.goto(shop.url);
  await visitorPage.locator("#kefu-launcher").click();
  const composer = widget().locator("textarea[data-testid=composer]");
  await composer.fill("Hello, where is my order #1234?");
  await composer.press("Enter");
  await widget().locator("[data-testid=message]:not([data-pending])", { hasText: "where is my order" }).waitFor();

  const { conversations } = await server.api("GET", "/conversations", undefined, server.adminToken);
  conversationId = conversations[0].id;
  assert.equal(conversations[0].status, "queued");
  // The page URL travels with the message for the agent's visitor panel.
  const { messages } = await server.api("GET", `/conversations/${conversationId}/messages`, undefined, server.adminToken);
  assert.equal(messages.at(-1).meta.page_url, shop.url);

  await agentPage.locator('[data-nav="queue"]').click();
  const row = agentPage.locator(`[data-testid=queue-item][data-conversation-id="${conversationId}"]`);
  await row.waitFor();
  await row.locator("[data-testid=claim]").click();
  await until(async () => (await server.api("GET", `/conversations/${conversationId}`, undefined, amyToken)).conversation.assignee_id === amy.id, 10_000, "claim");
  await agentPage.goto(`${agentProxy.origin}/#/chats/${conversationId}`);
  await agentPage.locator("[data-testid=message]", { hasText: "where is my order" }).waitFor();
  await agentPage.locator("[data-testid=visitor-panel]").waitFor();
  await agentPage.screenshot({ path: shot("flow-agent-chat") });

  const reply = agentPage.locator("textarea[data-testid=composer]");
  await reply.fill("Hi! It ships today from Hangzhou.");
  await reply.press("Enter");
  await widget().locator("[data-testid=message]", { hasText: "It ships today" }).waitFor();
  await visitorPage.screenshot({ path: shot("flow-widget-open") });
});

test("network drops on both sides: nothing missed, nothing doubled", async () => {
  agentProxy.cut();
  visitorProxy.cut();
  await agentPage.locator("[data-live=offline], [data-live=connecting]").waitFor({ timeout: 15_000 });

  // While both are offline: each side types (held in its outbox) and the
  // agent's colleague writes through the API (straight to the server).
  const vComposer = widget().locator("textarea[data-testid=composer]");
  await vComposer.fill("typed by the visitor while offline");
  await vComposer.press("Enter");
  const aComposer = agentPage.locator("textarea[data-testid=composer]");
  await aComposer.fill("typed by the agent while offline");
  await aComposer.press("Enter");
  for (const i of [1, 2]) {
    await server.api("POST", `/conversations/${conversationId}/messages`, { client_msg_id: `api-${i}`, content: `sent through the API ${i}` }, server.adminToken);
  }
  // A change the agent's screen can only learn by refetching: frames such as
  // `conversation` are not replayed on resume.
  await server.api("POST", `/conversations/${conversationId}/status`, { status: "pending" }, server.adminToken);
  await new Promise((r) => setTimeout(r, 1500));
  agentProxy.restore();
  visitorProxy.restore();

  const expected = [
    "where is my order",
    "It ships today",
    "typed by the visitor while offline",
    "typed by the agent while offline",
    "sent through the API 1",
    "sent through the API 2",
  ];
  for (const [side, root] of [["agent", agentPage], ["visitor", widget()]]) {
    await until(async () => {
      const messages = await thread(root);
      return expected.every((t) => messages.some((m) => m.text.includes(t))) && messages;
    }, 30_000, `${side} catches up`);
    // Give any duplicate a moment to show up before counting.
    await new Promise((r) => setTimeout(r, 500));
    assertOnceInOrder(await thread(root), expected, side);
  }
  // The store has each once, too.
  const { messages } = await server.api("GET", `/conversations/${conversationId}/messages?limit=200`, undefined, server.adminToken);
  for (const text of expected) assert.equal(messages.filter((m) => m.content.includes(text)).length, 1, `stored once: ${text}`);
  await agentPage.locator("[data-live=open]").waitFor();
  await agentPage.locator("[data-testid=conversation-status]", { hasText: "Pending" }).waitFor({ timeout: 10_000 });
  await server.api("POST", `/conversations/${conversationId}/status`, { status: "open" }, server.adminToken);
});

test("files go both ways: an image from the visitor, a file from the agent", async () => {
  await widget().locator("input[type=file][data-testid=file-input]").setInputFiles({ name: "receipt.png", mimeType: "image/png", buffer: PNG });
  await agentPage.locator("[data-testid=message][data-kind=image] img").first().waitFor();
  await agentPage.locator("input[type=file][data-testid=file-input]").setInputFiles({ name: "invoice.txt", mimeType: "text/plain", buffer: Buffer.from("Invoice 1234: 2 x Longjing, 268 CNY\n") });
  const file = widget().locator("[data-testid=message][data-kind=file]", { hasText: "invoice.txt" });
  await file.waitFor();
  const href = await file.locator("a").first().getAttribute("href");
  const body = await (await fetch(new URL(href, server.origin))).text();
  assert.match(body, /Invoice 1234/);
});

test("the agent makes a ticket from the chat", async () => {
  await agentPage.locator("[data-testid=create-ticket]").click();
  const dialog = agentPage.getByRole("dialog");
  await dialog.waitFor();
  await dialog.getByRole("button", { name: /Create|创建|新建/ }).click();
  await agentPage.locator("[data-testid=ticket-detail]").waitFor();
  const { tickets } = await server.api("GET", "/tickets", undefined, server.adminToken);
  const ticket = tickets.find((t) => t.conversation_id === conversationId);
  assert.ok(ticket, "a ticket linked to the chat");
  assert.match(ticket.subject, /where is my order/);
  assert.equal(await agentPage.locator("[data-testid=ticket-subject]").textContent().then((s) => s.trim()), ticket.subject);
});

test("nothing went wrong in either page", async () => {
  writeJson("flow-problems.json", { agent: problems.agent, visitor: problems.visitor });
  assert.deepEqual(problems.agent, []);
  assert.deepEqual(problems.visitor, []);
});
