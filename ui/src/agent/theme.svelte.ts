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

function apply(theme: Theme) {
  const root = document.documentElement;
  if (theme === "system") delete root.dataset.theme;
  else root.dataset.theme = theme;
}

export const theme = new ThemeState();
apply(theme.current);
