// A tidy check that keeps the UI's first safety rule from regressing: no
// source file renders HTML from strings (`{@html}`, innerHTML and friends).
// User content is shown as text or through linkify, never parsed.
import { describe, expect, it } from "vitest";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return sources(path);
    return /\.(svelte|ts)$/.test(name) && !/\.test\.ts$/.test(name) ? [path] : [];
  });
}

describe("no HTML from strings", () => {
  it("no {@html}, innerHTML, outerHTML, insertAdjacentHTML, document.write or eval", () => {
    const root = join(import.meta.dirname, "..");
    const files = sources(root);
    expect(files.length).toBeGreaterThan(20);
    const offenders = files.filter((file) =>
      /\{@html|\.innerHTML\b|\.outerHTML\b|insertAdjacentHTML|document\.write|\beval\(|new Function\(/.test(readFileSync(file, "utf8")),
    );
    expect(offenders).toEqual([]);
  });
});
