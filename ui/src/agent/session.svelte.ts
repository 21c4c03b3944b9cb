// The signed-in agent: token, profile, the agent directory, and the one live
// connection every screen listens to (`session.on(type, fn)`).
//
// Where the token lives: in the browser, sessionStorage (a reload keeps the
// agent signed in, closing the browser signs out); the desktop app replaces
// `tokenStore` with the OS keyring ("remember me").
import { Api, ApiError } from "../lib/api";
import { Live, type LiveState, type Moved } from "../lib/live";
import type { Agent, AgentStatus, ServerFrame } from "../lib/types";

export interface TokenStore {
  get(): string | null;
  set(token: string): void;
  clear(): void;
}

const KEY = "kefu.token";
export const browserTokenStore: TokenStore = {
  get: () => sessionStorage.getItem(KEY),
  set: (token) => sessionStorage.setItem(KEY, token),
  clear: () => sessionStorage.removeItem(KEY),
};

type FrameType = ServerFrame["type"];
type FrameOf<T extends FrameType> = Extract<ServerFrame, { type: T }>;
type Listener = (frame: ServerFrame) => void;

/** Where the server is: this page's origin, unless the desktop shell says otherwise. */
function apiBase(): string {
  const configured = (globalThis as { __KEFU_API_BASE__?: string }).__KEFU_API_BASE__;
  return configured ?? "";
}

class Session {
  me = $state<Agent | null>(null);
  agents = $state<Agent[]>([]);
  live = $state<LiveState>("stopped");
  /** Set when the server refused our token (revoked): the login screen says so. */
  expired = $state(false);
  /** The shop moved to another LAN host (a handover): the shell says where. */
  moved = $state<Moved | null>(null);

  readonly api = new Api(apiBase());
  tokenStore: TokenStore = browserTokenStore;
  private connection: Live | null = null;
  private readonly listeners = new Map<string, Set<Listener>>();
  private readonly resumeSources = new Set<() => Record<string, number>>();
  private readonly welcomeListeners = new Set<(reconnected: boolean) => void>();

  /** Listens to one frame type; returns the function that stops listening. */
  on<T extends FrameType>(type: T, fn: (frame: FrameOf<T>) => void): () => void {
    let set = this.listeners.get(type);
    if (!set) this.listeners.set(type, (set = new Set()));
    set.add(fn as Listener);
    return () => set!.delete(fn as Listener);
  }

  /** Called after every `welcome`: refetch what frames could not replay. */
  onWelcome(fn: (reconnected: boolean) => void): () => void {
    this.welcomeListeners.add(fn);
    return () => this.welcomeListeners.delete(fn);
  }

  /** Adds conversations (id → highest seq held) to the resume map of each hello. */
  addResumeSource(fn: () => Record<string, number>): () => void {
    this.resumeSources.add(fn);
    return () => this.resumeSources.delete(fn);
  }

  /** The live connection (null when signed out). */
  get socket(): Live | null {
    return this.connection;
  }

  agentName(id: string | null | undefined): string {
    if (!id) return "";
    return this.agents.find((a) => a.id === id)?.display_name ?? "";
  }

  /** Signs in with a token kept from before; false if there is none or it is revoked. */
  async restore(): Promise<boolean> {
    const token = this.tokenStore.get();
    if (!token) return false;
    this.api.setToken(token);
    try {
      const { agent } = await this.api.get<{ agent: Agent }>("/agents/me");
      await this.begin(agent);
      return true;
    } catch (err) {
      if (err instanceof ApiError && (err.status === 401 || err.status === 403)) {
        this.tokenStore.clear();
        this.api.setToken(null);
      }
      return false;
    }
  }

  async login(username: string, password: string): Promise<void> {
    const { token, agent } = await this.api.post<{ token: string; agent: Agent }>("/auth/login", {
      username,
      password,
    });
    this.api.setToken(token);
    this.tokenStore.set(token);
    this.expired = false;
    await this.begin(agent);
    // Signing in is starting work: an offline agent becomes available (the
    // status menu switches it back). Away stays away; a resumed session
    // (reload, keyring) keeps whatever the agent chose.
    if (agent.status === "offline") await this.setStatus("online").catch(() => {});
  }

  async logout(): Promise<void> {
    try {
      await this.api.post("/auth/logout");
    } catch {
      // Signed out locally either way.
    }
    this.end();
  }

  async setStatus(status: AgentStatus): Promise<void> {
    const { agent } = await this.api.post<{ agent: Agent }>("/agents/me/status", { status });
    this.me = agent;
    this.upsertAgent(agent);
  }

  async refreshAgents(): Promise<void> {
    const { agents } = await this.api.get<{ agents: Agent[] }>("/agents");
    this.agents = agents;
    const me = agents.find((a) => a.id === this.me?.id);
    if (me) this.me = me;
  }

  private upsertAgent(agent: Agent) {
    const i = this.agents.findIndex((a) => a.id === agent.id);
    if (i >= 0) this.agents[i] = agent;
    else this.agents.push(agent);
  }

  private async begin(agent: Agent) {
    this.me = agent;
    try {
      await this.refreshAgents();
    } catch {
      this.agents = [agent];
    }
    this.connection?.stop();
    const token = this.tokenStore.get();
    const live = new Live({
      url: () => this.api.wsUrl(),
      token: () => token,
      resume: () => {
        const out: Record<string, number> = {};
        for (const source of this.resumeSources) Object.assign(out, source());
        return out;
      },
      onFrame: (frame) => this.dispatch(frame),
      onWelcome: (_welcome, reconnected) => {
        if (reconnected) void this.refreshAgents().catch(() => {});
        for (const fn of this.welcomeListeners) fn(reconnected);
      },
      onState: (state) => (this.live = state),
      onRefused: () => {
        this.expired = true;
        this.end();
      },
      onMoved: (moved) => (this.moved = moved),
    });
    this.connection = live;
    live.start();
  }

  private dispatch(frame: ServerFrame) {
    if (frame.type === "agent") {
      this.upsertAgent(frame.agent);
      if (frame.agent.id === this.me?.id) this.me = frame.agent;
    }
    const set = this.listeners.get(frame.type);
    if (set) for (const fn of set) fn(frame);
  }

  private end() {
    this.connection?.stop();
    this.connection = null;
    this.tokenStore.clear();
    this.api.setToken(null);
    this.me = null;
    this.agents = [];
  }
}

export const session = new Session();
