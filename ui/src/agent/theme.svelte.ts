// Light, dark, or the system's choice; a preference kept in localStorage.
export type Theme = "system" | "light" | "dark";
const KEY = "kefu.theme";

class ThemeState {
  current = $state<Theme>((localStorage.getItem(KEY) as Theme | null) ?? "system");

  set(theme: Theme) {
    this.current = theme;
    localStorage.setItem(KEY, theme);
    apply(theme);
  }
}

const dark = window.matchMedia("(prefers-color-scheme: dark)");

/** Puts the effective theme on the root; "system" follows the OS, live. */
function apply(theme: Theme) {
  const effective = theme === "system" ? (dark.matches ? "dark" : "light") : theme;
  document.documentElement.dataset.theme = effective;
}

export const theme = new ThemeState();
apply(theme.current);
dark.addEventListener("change", () => apply(theme.current));
