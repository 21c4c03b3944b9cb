// What an admin copies into their site: the widget's script tag, and how
// their backend computes `user_hash` for identity verification.

/** `<script src="ORIGIN/widget.js" data-app-key="ak_…" async></script>` */
export function embedSnippet(origin: string, appKey: string): string {
  const base = origin.replace(/\/+$/, "");
  return `<script src="${base}/widget.js" data-app-key="${appKey}" async></script>`;
}

/** The server's demo page with this app's widget, for a test message. */
export function demoPageUrl(origin: string, appKey: string): string {
  return `${origin.replace(/\/+$/, "")}/widget/demo.html?app_key=${encodeURIComponent(appKey)}`;
}

/** The server-side code that signs a user id (HMAC-SHA256, hex), per language. */
export function userHashExamples(): { label: string; code: string }[] {
  return [
    {
      label: "Node.js",
      code: `const crypto = require("crypto");\nconst userHash = crypto.createHmac("sha256", process.env.KEFU_SECRET).update(userId).digest("hex");`,
    },
    {
      label: "Python",
      code: `import hmac, hashlib\nuser_hash = hmac.new(KEFU_SECRET.encode(), user_id.encode(), hashlib.sha256).hexdigest()`,
    },
    {
      label: "PHP",
      code: `$userHash = hash_hmac('sha256', $userId, getenv('KEFU_SECRET'));`,
    },
  ];
}

/** The page-side call that passes it on. */
export function setUserExample(): string {
  return `window.Kefu.setUser(userId, { name, email, userHash });`;
}

/** One allowed origin per line (or comma) → the list the server expects. */
export function parseOrigins(text: string): string[] {
  return text
    .split(/[\s,]+/)
    .map((o) => o.trim())
    .filter(Boolean);
}
