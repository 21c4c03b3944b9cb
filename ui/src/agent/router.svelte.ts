// Hash routes (`#/chats/ID`), so the same build works at `/` on the server
// and from the desktop app's own assets.
export interface Route {
  page: "queue" | "chats" | "tickets" | "settings";
  /** The rest of the path: a conversation id, a ticket number, a settings tab. */
  params: string[];
}

export function parseHash(hash: string): Route {
  const parts = hash.replace(/^#\/?/, "").split("/").filter(Boolean).map(decodeURIComponent);
  const page = parts[0];
  if (page === "queue" || page === "chats" || page === "tickets" || page === "settings") {
    return { page, params: parts.slice(1) };
  }
  return { page: "chats", params: [] };
}

class Router {
  route = $state<Route>(parseHash(location.hash));

  constructor() {
    window.addEventListener("hashchange", () => (this.route = parseHash(location.hash)));
  }

  go(page: Route["page"], ...params: (string | number)[]) {
    location.hash = "#/" + [page, ...params.map((p) => encodeURIComponent(String(p)))].join("/");
  }
}

export const router = new Router();
