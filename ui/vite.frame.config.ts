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
    target: "es2020",
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
