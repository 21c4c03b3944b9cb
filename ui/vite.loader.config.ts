// widget.js: the embed script a shop puts on its pages. A classic script (an
// IIFE, no modules) so it works in any page, appended to the build of the two
// pages (emptyOutDir: false).
import { defineConfig } from "vite";
import { resolve } from "node:path";

export default defineConfig({
  build: {
    outDir: "dist",
    emptyOutDir: false,
    target: "es2017",
    lib: {
      entry: resolve(import.meta.dirname, "src/widget/loader.ts"),
      name: "KefuLoader",
      formats: ["iife"],
      fileName: () => "widget.js",
    },
  },
});
