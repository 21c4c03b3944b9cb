// Builds the agent workstation (index.html), served by kefu-server at `/`.
// The widget is built apart so that nothing of the workstation ends up in
// what a visitor loads: its iframe app (vite.frame.config.ts) and the embed
// script widget.js (vite.loader.config.ts), a classic script for any page.
/// <reference types="vitest/config" />
import { defineConfig } from "vite";
import { svelte } from "@sveltejs/vite-plugin-svelte";
import { resolve } from "node:path";

// `npm run dev` proxies the API to a kefu-server on the default port.
const server = process.env.KEFU_DEV_SERVER ?? "http://127.0.0.1:5338";

export default defineConfig({
  plugins: [svelte()],
  base: "/",
  build: {
    outDir: "dist",
    emptyOutDir: true,
    target: "es2020",
    // No inline data: URLs: the CSP allows scripts and styles from 'self' only.
    assetsInlineLimit: 0,
    modulePreload: { polyfill: false },
    rollupOptions: {
      input: {
        main: resolve(import.meta.dirname, "index.html"),
        // In `npm run dev` the frame is served from here too.
        ...(process.env.KEFU_DEV_FRAME ? { frame: resolve(import.meta.dirname, "widget/frame.html") } : {}),
      },
    },
  },
  server: {
    proxy: {
      "/api/v1/ws": { target: server.replace(/^http/, "ws"), ws: true },
      "/api": server,
      "/healthz": server,
    },
  },
  test: {
    include: ["src/**/*.test.ts"],
    environment: "node",
  },
});
