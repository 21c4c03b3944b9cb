// Prints the gzipped size of what a visitor's browser loads for the widget:
// widget.js plus the iframe page and its scripts and styles. Writes
// dist/size.json so docs and CI can read the figure.
import { readFileSync, writeFileSync } from "node:fs";
import { gzipSync } from "node:zlib";
import { join } from "node:path";

const dist = new URL("../dist/", import.meta.url).pathname;
const frameHtml = readFileSync(join(dist, "widget/frame.html"), "utf8");
const refs = [...frameHtml.matchAll(/(?:src|href)="\/([^"]+)"/g)].map((m) => m[1]);
// Chunks the frame's entry imports are part of its load too.
const seen = new Set();
const queue = [...refs];
while (queue.length) {
  const ref = queue.shift();
  if (seen.has(ref)) continue;
  seen.add(ref);
  if (ref.endsWith(".js")) {
    const text = readFileSync(join(dist, ref), "utf8");
    // Static imports, and dynamic ones (a minifier may quote them with backticks).
    for (const m of text.matchAll(/from\s*["'`]\.\/([^"'`]+\.js)["'`]|import\(\s*["'`]\.\/([^"'`]+\.js)["'`]\s*\)/g)) {
      const dir = ref.slice(0, ref.lastIndexOf("/") + 1);
      queue.push(dir + (m[1] ?? m[2]));
    }
  }
}
const files = ["widget.js", "widget/frame.html", ...seen];
let raw = 0;
let gz = 0;
const rows = files.map((file) => {
  const bytes = readFileSync(join(dist, file));
  const zipped = gzipSync(bytes, { level: 9 }).length;
  raw += bytes.length;
  gz += zipped;
  return { file, bytes: bytes.length, gzip: zipped };
});
const report = { files: rows, total_bytes: raw, total_gzip: gz, budget_gzip: 30 * 1024 };
writeFileSync(join(dist, "size.json"), JSON.stringify(report, null, 2));
const over = gz > report.budget_gzip ? ` — OVER by ${((gz - report.budget_gzip) / 1024).toFixed(1)} KB` : "";
console.log(`widget: ${files.length} files, ${(raw / 1024).toFixed(1)} KB, ${(gz / 1024).toFixed(1)} KB gzipped (budget 30 KB)${over}`);
for (const row of rows) console.log(`  ${row.file}: ${(row.gzip / 1024).toFixed(1)} KB gzipped`);
