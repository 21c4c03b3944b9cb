// widget.js: the embed script a shop puts on its pages. A classic script (an
// IIFE, no modules) so it works in any page, appended to the build of the two
// pages (emptyOutDir: false).
import { defineConfig } from "vite";
import { resolve } from "node:path";

export default defineConfig({
  build: {
    outDir: "dist",
    emptyOutDir: false,
    // The same floor as the frame: a browser that cannot run the chat needs no launcher.
    target: "es2020",
    lib: {
      entry: resolve(import.meta.dirname, "src/widget/loader.ts"),
      name: "KefuLoader",
      formats: ["iife"],
      fileName: () => "widget.js",
    },
  },
});
