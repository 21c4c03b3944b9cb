// Helpers of the desktop end-to-end tests: ports, HTTP, the Kefu API, and
// tauri-driver started with the app's environment.
import { execFileSync, spawn } from "node:child_process";
import { createServer } from "node:net";

const DRIVER = process.env.TAURI_DRIVER ?? "tauri-driver";

export function freePort() {
  return new Promise((res, rej) => {
    const s = createServer();
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => res(port));
    });
    s.on("error", rej);
  });
}

/** Names of the X server's windows (the app's native window title among them). */
export function nativeWindowTitles() {
  const tree = execFileSync("xwininfo", ["-root", "-tree"], { encoding: "utf8" });
  return [...tree.matchAll(/^\s*0x[0-9a-f]+ "(.*)": /gm)].map((m) => m[1]);
}

export async function waitHttp(url, timeoutMs = 30000) {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    try {
      const res = await fetch(url);
      if (res.ok) return res;
    } catch {
      // not up yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${url} did not answer`);
}

export async function api(base, method, path, token, body) {
  const res = await fetch(`${base}/api/v1${path}`, {
    method,
    headers: {
      ...(token ? { authorization: `Bearer ${token}` } : {}),
      ...(body ? { "content-type": "application/json" } : {}),
    },
    body: body ? JSON.stringify(body) : undefined,
  });
  const json = await res.json();
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${JSON.stringify(json)}`);
  return json;
}

/** Starts tauri-driver with the app's environment; resolves when it listens. */
export async function startDriver(env) {
  const port = await freePort();
  const nativePort = await freePort();
  const child = spawn(DRIVER, ["--port", String(port), "--native-port", String(nativePort)], {
    env: { ...process.env, ...env },
    stdio: ["ignore", "inherit", "inherit"],
  });
  const url = `http://127.0.0.1:${port}`;
  const until = Date.now() + 15000;
  while (Date.now() < until) {
    try {
      await fetch(`${url}/status`);
      return { child, url };
    } catch {
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  child.kill();
  throw new Error("tauri-driver did not start");
}
