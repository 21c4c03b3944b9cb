// The App object of docs/API.md §2.3 as the settings screens use it.
import type { BusinessHours } from "./businessHours";

export interface App {
  id: string;
  app_key: string;
  secret: string;
  name: string;
  identity_verification: "off" | "required";
  allowed_origins: string[];
  welcome_message: string;
  offline_message: string;
  business_hours: BusinessHours | null;
  created_at: number;
}
