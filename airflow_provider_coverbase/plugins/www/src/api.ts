/** The provider's JSON API (plugins/ui_api.py), called with the user's own Airflow session cookie. */

export type Checkpoint = { name: string; at: number; source: "coverbase" | "webhook" | "first_seen" };

export type Delivery = {
  event_id: string;
  event_type: string;
  received_at: number;
  occurred_at: number | null;
  status: string | null;
  checkpoint: string | null;
};

export type RunRecord = {
  workflow_run_id: string;
  workflow_name?: string | null;
  conn_id?: string | null;
  url?: string | null;
  origin?: "created" | "reattached" | "watched" | "webhook";
  try_number?: number | null;
  idempotency_key?: string | null;
  status: string;
  api_status?: string | null;
  started_at?: number | null;
  completed_at?: number | null;
  checkpoints: Checkpoint[];
  current_step?: string | null;
  failed_step?: string | null;
  failure_reason?: string | null;
  last_poll_at?: number | null;
  next_poll_at?: number | null;
  output?: unknown;
  output_truncated?: boolean;
  live?: boolean;
  live_error?: string | null;
};

export type TaskInstanceAnswer = {
  run: RunRecord | null;
  task_instance: { state: string | null; try_number: number | null };
  deliveries: Delivery[];
  now?: number;
};

export type RunRow = {
  source: "task" | "webhook";
  dag_id: string | null;
  dag_run_id: string | null;
  task_id: string | null;
  map_index: number;
  try_number: number | null;
  ti_path: string | null;
  conn_id: string | null;
  workflow: string | null;
  workflow_run_id: string;
  status: string;
  started_at: number | null;
  age_seconds: number | null;
  last_checkpoint: string | null;
  last_progress_at: number | null;
  stale: boolean;
  coverbase_url: string | null;
  failure_reason: string | null;
};

export type RunsAnswer = {
  total: number;
  offset: number;
  limit: number;
  stale_hours: number;
  facets: { status: string[]; workflow: string[]; dag_id: string[]; conn_id: string[] };
  runs: RunRow[];
  now: number;
};

export const TERMINAL = new Set(["completed", "failed", "cancelled"]);

/** An address under the Airflow UI's base (works behind a path prefix). */
export const appUrl = (path: string): string => new URL(path, document.baseURI).toString();

const getJson = async <T,>(path: string, params: Record<string, string | number | boolean | undefined>): Promise<T> => {
  const query = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== undefined && value !== "") query.set(key, String(value));
  }
  const response = await fetch(appUrl(`coverbase-ui/api/${path}?${query.toString()}`), {
    credentials: "same-origin",
    headers: { Accept: "application/json" },
  });
  if (!response.ok) {
    let detail = response.statusText;
    try {
      detail = ((await response.json()) as { detail?: string }).detail ?? detail;
    } catch {
      // not JSON: keep the status text
    }
    throw new Error(`${response.status}: ${detail}`);
  }
  return (await response.json()) as T;
};

export const fetchTaskInstance = (dagId: string, dagRunId: string, taskId: string, mapIndex: number) =>
  getJson<TaskInstanceAnswer>("task-instance", { dag_id: dagId, dag_run_id: dagRunId, task_id: taskId, map_index: mapIndex });

export type RunsQuery = {
  status?: string;
  workflow?: string;
  dag_id?: string;
  conn_id?: string;
  stale_hours?: number;
  stale_only?: boolean;
  limit?: number;
  offset?: number;
};

export const fetchRuns = (query: RunsQuery) => getJson<RunsAnswer>("runs", query);
