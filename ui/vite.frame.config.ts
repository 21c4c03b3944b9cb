// The widget's iframe app, /widget/frame.html: its own build, so its chunks
// hold only what the widget uses (the size budget is 30 KB gzipped with
// widget.js). Appended to the workstation's build (emptyOutDir: false).
import { defineConfig } from "vite";
import { svelte } from "@sveltejs/vite-plugin-svelte";
import { resolve } from "node:path";

export default defineConfig({
  plugins: [svelte()],
  base: "/",
  build: {
    outDir: "dist",
    emptyOutDir: false,
    // es2022: class fields (Svelte's runtime and $state in classes) stay native,
    // not transpiled into helpers — a third of the frame's size.
    target: "es2022",
    assetsInlineLimit: 0,
    modulePreload: { polyfill: false },
    rollupOptions: {
      input: { frame: resolve(import.meta.dirname, "widget/frame.html") },
      output: {
        entryFileNames: "widget/assets/[name]-[hash].js",
        chunkFileNames: "widget/assets/[name]-[hash].js",
        assetFileNames: "widget/assets/[name]-[hash][extname]",
      },
    },
  },
});
