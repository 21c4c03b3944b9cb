// An XSS corpus fed through every way user content reaches a screen — a
// visitor's message, name and attributes, an agent's name and reply, a
// ticket subject — and nothing of it executes in the agent UI or the
// widget: no script runs, no element with a handler appears, no
// `javascript:` link is made, and the text is shown as text.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startServer, launchBrowser, watchPage, startShopPage, signIn, until, shot } from "./harness.mjs";

const CORPUS = [
  `<script>window.__xss=1</script>`,
  `<img src=x onerror="window.__xss=1">`,
  `<svg onload="window.__xss=1"></svg>`,
  `<svg><script>window.__xss=1</script></svg>`,
  `javascript:window.__xss=1`,
  `<a href="javascript:window.__xss=1">click me</a>`,
  `[click](javascript:window.__xss=1)`,
  `<iframe src="javascript:window.__xss=1"></iframe>`,
  `<div style="background:url(javascript:window.__xss=1)">styled</div>`,
  `" onmouseover="window.__xss=1" x="`,
  `<details open ontoggle="window.__xss=1">`,
  `{@html '<img src=x onerror=window.__xss=1>'}`,
  `<math><mtext><table><mglyph><style><img src=x onerror=window.__xss=1>`,
  `data:text/html,<script>window.__xss=1</script>`,
  `https://ok.example/"><img src=x onerror=window.__xss=1>`,
  `{{constructor.constructor('window.__xss=1')()}}`,
];
const JOINED = CORPUS.join("\n");

let server, browser, shop;
before(async () => {
  server = await startServer();
  browser = await launchBrowser();
});
after(async () => {
  await browser?.close();
  await shop?.close();
  await server?.stop();
});

/** Every frame of the page: no marker set, no handler attributes, no javascript: links. */
async function assertInert(page, label) {
  for (const frame of page.frames()) {
    const found = await frame.evaluate(() => {
      const bad = [];
      if (window.__xss !== undefined) bad.push("window.__xss was set");
      for (const el of document.querySelectorAll("*")) {
        for (const attr of el.attributes) {
          if (/^on/i.test(attr.name)) bad.push(`<${el.tagName.toLowerCase()} ${attr.name}>`);
          if (/^(href|src|action|formaction|xlink:href)$/i.test(attr.name) && /^\s*(javascript|data|vbscript):/i.test(attr.value)) {
            bad.push(`<${el.tagName.toLowerCase()} ${attr.name}="${attr.value.slice(0, 40)}">`);
          }
        }
        if (el.tagName === "SCRIPT" && /__xss/.test(el.textContent ?? "")) bad.push("an injected <script>");
      }
      return bad;
    }).catch(() => []);
    assert.deepEqual(found, [], `${label} (${frame.url()})`);
  }
}

test("the corpus stays text in the agent UI and the widget", async () => {
  const { app } = await server.api("POST", "/apps", { name: "Shop", identity_verification: "off", allowed_origins: [] }, server.adminToken);
  await server.api("POST", "/agents/me/status", { status: "online" }, server.adminToken);
  // An agent whose name is a payload; replies in the widget carry it.
  const { agent: evil } = await server.api("POST", "/agents", { username: "evil", password: "evil-pass-123", display_name: `<img src=x onerror="window.__xss=1">Eve`, role: "agent" }, server.adminToken);
  const { token: evilToken } = await server.api("POST", "/auth/login", { username: "evil", password: "evil-pass-123" });

  // The visitor, through the widget on a shop's page.
  shop = await startShopPage(server.origin, app.app_key);
  const visitorPage = await browser.newPage();
  const visitorProblems = watchPage(visitorPage, "widget");
  await visitorPage.goto(shop.url);
  await visitorPage.evaluate((payload) => {
    window.Kefu.setUser("user-xss", { name: payload, email: "x@example.com" });
    window.Kefu.setAttributes({ plan: payload, [payload.slice(0, 40)]: "key is a payload" });
  }, CORPUS[1]);
  await visitorPage.locator("#kefu-launcher").click();
  const frame = visitorPage.frameLocator('iframe[title="Kefu chat"]');
  const composer = frame.locator("textarea[data-testid=composer]");
  for (const payload of [JOINED, ...CORPUS.slice(0, 4)]) {
    await composer.fill(payload);
    await composer.press("Enter");
  }
  await until(async () => (await frame.locator("[data-testid=message]:not([data-pending])").count()) >= 5, 15_000, "visitor messages acked");

  const { conversations } = await server.api("GET", "/conversations", undefined, server.adminToken);
  const conv = conversations.find((c) => c.visitor.name === CORPUS[1]);
  assert.ok(conv, "the visitor's name was stored as given");
  assert.equal(conv.visitor.attributes.plan, CORPUS[1]);
  await server.api("POST", `/conversations/${conv.id}/assign`, { agent_id: evil.id }, server.adminToken);
  await server.api("POST", `/conversations/${conv.id}/messages`, { client_msg_id: "evil-1", content: JOINED }, evilToken);
  const { ticket } = await server.api("POST", "/tickets", { subject: CORPUS[1], description: JOINED, priority: "high", conversation_id: conv.id }, server.adminToken);
  await server.api("POST", `/tickets/${ticket.number}/comments`, { body: JOINED, public: false }, server.adminToken);

  // The widget shows the agent's reply and name.
  await frame.locator("[data-testid=message]", { hasText: "window.__xss=1" }).nth(5).waitFor();
  await visitorPage.waitForTimeout(500);
  await assertInert(visitorPage, "widget");
  assert.deepEqual(visitorProblems, []);

  // The agent UI: the chat, the visitor panel, the ticket list and detail.
  const agentPage = await browser.newPage({ viewport: { width: 1400, height: 900 } });
  const agentProblems = watchPage(agentPage, "agent");
  await signIn(agentPage, server.origin, "owner", "owner-pass-1");
  await agentPage.goto(`${server.origin}/#/chats/${conv.id}`);
  await agentPage.locator("[data-testid=message]", { hasText: "<script>window.__xss=1</script>" }).first().waitFor();
  await agentPage.locator("[data-testid=visitor-panel]", { hasText: "onerror" }).waitFor();
  // Hover and click what a curious agent would.
  for (const link of await agentPage.locator("[data-testid=message] a").all()) {
    const href = await link.getAttribute("href");
    assert.match(href ?? "", /^(https?:|mailto:|\/)/, `link ${href}`);
  }
  await agentPage.locator("[data-testid=message]").last().hover();
  await assertInert(agentPage, "agent chat");
  await agentPage.screenshot({ path: shot("xss-agent-chat") });
  await agentPage.goto(`${server.origin}/#/tickets`);
  await agentPage.locator(`[data-testid=ticket-row][data-number="${ticket.number}"]`).waitFor();
  await assertInert(agentPage, "ticket list");
  await agentPage.goto(`${server.origin}/#/tickets/${ticket.number}`);
  await agentPage.locator("[data-testid=ticket-subject]", { hasText: "onerror" }).waitFor();
  await agentPage.waitForTimeout(500);
  await assertInert(agentPage, "ticket detail");
  await agentPage.goto(`${server.origin}/#/queue`);
  await agentPage.waitForTimeout(300);
  await assertInert(agentPage, "queue");
  assert.deepEqual(agentProblems, []);
});
