// Svelte compiler options shared by Vite and svelte-check.
export default {
  compilerOptions: {
    runes: true,
    // No version beacon in the bundles (bytes the widget budget counts).
    discloseVersion: false,
  },
};
