// A small user-agent reader for the visitor panel ("Chrome 120 · macOS"):
// the agent wants a hint of the visitor's device, not a full database.

export interface Device {
  browser: string | null;
  version: string | null;
  os: string | null;
  mobile: boolean;
}

const BROWSERS: [RegExp, string][] = [
  // Order matters: many browsers also claim to be Chrome and Safari.
  [/MicroMessenger\/([\d.]+)/, "WeChat"],
  [/DingTalk\/([\d.]+)/, "DingTalk"],
  [/Edg(?:e|A|iOS)?\/([\d.]+)/, "Edge"],
  [/OPR\/([\d.]+)/, "Opera"],
  [/SamsungBrowser\/([\d.]+)/, "Samsung Internet"],
  [/UCBrowser\/([\d.]+)/, "UC Browser"],
  [/QQBrowser\/([\d.]+)/, "QQ Browser"],
  [/YaBrowser\/([\d.]+)/, "Yandex"],
  [/Firefox\/([\d.]+)/, "Firefox"],
  [/FxiOS\/([\d.]+)/, "Firefox"],
  [/CriOS\/([\d.]+)/, "Chrome"],
  [/Chrome\/([\d.]+)/, "Chrome"],
  [/Version\/([\d.]+).*Safari\//, "Safari"],
];

function os(ua: string): string | null {
  let m: RegExpMatchArray | null;
  if ((m = ua.match(/Windows NT ([\d.]+)/))) {
    const v: Record<string, string> = { "10.0": "10/11", "6.3": "8.1", "6.2": "8", "6.1": "7" };
    return `Windows ${v[m[1]] ?? m[1]}`;
  }
  if ((m = ua.match(/(?:iPhone|CPU) OS (\d+)[_\d]*/))) return `iOS ${m[1]}`;
  if (/iPad/.test(ua)) return "iPadOS";
  if ((m = ua.match(/Android (\d+(?:\.\d+)?)/))) return `Android ${m[1]}`;
  if (/Android/.test(ua)) return "Android";
  if (/CrOS/.test(ua)) return "ChromeOS";
  if (/Mac OS X|Macintosh/.test(ua)) return "macOS";
  if (/HarmonyOS/.test(ua)) return "HarmonyOS";
  if (/Linux/.test(ua)) return "Linux";
  return null;
}

export function parseUserAgent(ua: string): Device {
  let browser: string | null = null;
  let version: string | null = null;
  for (const [re, name] of BROWSERS) {
    const m = ua.match(re);
    if (m) {
      browser = name;
      version = m[1].split(".")[0];
      break;
    }
  }
  return { browser, version, os: os(ua), mobile: /Mobile|Android|iPhone|iPad/.test(ua) };
}

/** "Chrome 120 · macOS"; "" when nothing is recognised. */
export function describeDevice(ua: string): string {
  const d = parseUserAgent(ua);
  const parts: string[] = [];
  if (d.browser) parts.push(d.version ? `${d.browser} ${d.version}` : d.browser);
  if (d.os) parts.push(d.os);
  return parts.join(" · ");
}
