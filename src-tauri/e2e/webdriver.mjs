// A minimal W3C WebDriver client (fetch only, no dependencies) for the
// desktop end-to-end test: tauri-driver in front of Debian's WebKitWebDriver.
const ELEMENT = "element-6066-11e4-a52e-4f735466cecf";

export class WebDriver {
  constructor(url) {
    this.url = url.replace(/\/$/, "");
    this.session = null;
  }

  async cmd(method, path, body) {
    const res = await fetch(this.url + path, {
      method,
      headers: body === undefined ? {} : { "content-type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const json = await res.json().catch(() => ({}));
    if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${JSON.stringify(json.value ?? json)}`);
    return json.value;
  }

  s(path) {
    return `/session/${this.session}${path}`;
  }

  async start(application, args = []) {
    const value = await this.cmd("POST", "/session", {
      capabilities: { alwaysMatch: { "tauri:options": { application, args } } },
    });
    this.session = value.sessionId;
    return value;
  }

  async quit() {
    if (this.session) await this.cmd("DELETE", this.s("")).catch(() => {});
    this.session = null;
  }

  async find(css) {
    const value = await this.cmd("POST", this.s("/element"), { using: "css selector", value: css });
    return value[ELEMENT];
  }

  async findAll(css) {
    const value = await this.cmd("POST", this.s("/elements"), { using: "css selector", value: css });
    return value.map((v) => v[ELEMENT]);
  }

  /** Waits until `css` matches a displayed element; returns it. */
  async waitFor(css, timeoutMs = 20000) {
    const until = Date.now() + timeoutMs;
    let last;
    while (Date.now() < until) {
      try {
        const el = await this.find(css);
        if (await this.cmd("GET", this.s(`/element/${el}/displayed`))) return el;
      } catch (err) {
        last = err;
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`timed out waiting for ${css}: ${last?.message ?? "not displayed"}`);
  }

  async type(el, text) {
    await this.cmd("POST", this.s(`/element/${el}/value`), { text });
  }

  async clear(el) {
    await this.cmd("POST", this.s(`/element/${el}/clear`), {});
  }

  async click(el) {
    await this.cmd("POST", this.s(`/element/${el}/click`), {});
  }

  async text(el) {
    return this.cmd("GET", this.s(`/element/${el}/text`));
  }

  async prop(el, name) {
    return this.cmd("GET", this.s(`/element/${el}/property/${name}`));
  }

  async exec(script, args = []) {
    return this.cmd("POST", this.s("/execute/sync"), { script, args });
  }

  async title() {
    return this.cmd("GET", this.s("/title"));
  }

  async screenshot() {
    return Buffer.from(await this.cmd("GET", this.s("/screenshot")), "base64");
  }

  /** Polls `fn` until it returns a truthy value. */
  async until(what, fn, timeoutMs = 20000) {
    const until = Date.now() + timeoutMs;
    let last;
    while (Date.now() < until) {
      try {
        const value = await fn();
        if (value) return value;
      } catch (err) {
        last = err;
      }
      await new Promise((r) => setTimeout(r, 150));
    }
    throw new Error(`timed out: ${what}${last ? ` (${last.message})` : ""}`);
  }
}
