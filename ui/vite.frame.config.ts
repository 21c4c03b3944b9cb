// The widget's iframe app, /widget/frame.html: its own build, so its chunks
// hold only what the widget uses (the size budget is 30 KB gzipped with
// widget.js). Appended to the workstation's build (emptyOutDir: false).
import { defineConfig } from "vite";
import { svelte } from "@sveltejs/vite-plugin-svelte";
import { resolve } from "node:path";

// `npx vite preview --config vite.frame.config.ts` serves the built widget
// (dist/widget.js, dist/widget/frame.html) with the API proxied, to try it
// from a test page on another origin before kefu-server serves it.
const server = process.env.KEFU_DEV_SERVER ?? "http://127.0.0.1:5338";
const proxy = {
  "/api/v1/ws": { target: server.replace(/^http/, "ws"), ws: true },
  "/api": server,
};

export default defineConfig({
  server: { proxy },
  preview: { proxy },
  // Short scoped-class names (`k3f9` rather than `svelte-1x2y3z4`): they
  // repeat in every template and style rule the visitor downloads.
  plugins: [svelte({ compilerOptions: { cssHash: ({ hash, css }) => `k${hash(css).slice(0, 4)}` } })],
  base: "/",
  build: {
    outDir: "dist",
    emptyOutDir: false,
    // es2022: class fields (Svelte's runtime, $state in classes) stay native
    // instead of being transpiled into helpers.
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
