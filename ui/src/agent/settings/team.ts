// The Team object of docs/API.md §2.7.
export interface Team {
  id: string;
  name: string;
  agent_ids: string[];
  created_at: number;
}
