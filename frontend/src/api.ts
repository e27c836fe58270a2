// The node's HTTP API as the UI uses it. Every failure becomes an ApiError whose `kind` tells
// the pages what to show: the node cannot be reached, or it refused the request (with its
// message).

export type ErrorKind = "unreachable" | "refused";

export class ApiError extends Error {
  constructor(
    readonly kind: ErrorKind,
    message: string,
    readonly status?: number,
  ) {
    super(message);
  }
}

export interface Column {
  name: string;
  /** The Postgres type name (`timestamptz`, `float8`, `text`, …). */
  type: string;
}

export type Cell = string | number | boolean | null;

export interface SqlResult {
  columns: Column[];
  rows: Cell[][];
  row_count: number;
  duration_ns: number;
}

/** Fired on `window` when the node answers 401: the shell then asks the user to log in. */
export const UNAUTHORIZED_EVENT = "minitrue-unauthorized";

function noticeUnauthorized(response: Response) {
  if (response.status === 401) window.dispatchEvent(new Event(UNAUTHORIZED_EVENT));
}

async function post(path: string, body: string, contentType: string): Promise<Response> {
  let response: Response;
  try {
    response = await fetch(path, { method: "POST", body, headers: { "Content-Type": contentType } });
  } catch (error) {
    throw new ApiError("unreachable", `the node cannot be reached (${String(error)})`);
  }
  noticeUnauthorized(response);
  if (!response.ok) {
    let message = `${response.status} ${response.statusText}`;
    try {
      const answer = await response.json();
      if (answer && typeof answer.message === "string") message = answer.message;
    } catch {
      // Not JSON: keep the status line.
    }
    throw new ApiError("refused", message, response.status);
  }
  return response;
}

/** Runs one SQL statement (`POST /api/v1/sql`). */
export async function runSql(sql: string): Promise<SqlResult> {
  const response = await post("/api/v1/sql?format=json", sql, "text/plain");
  const answer = await response.json();
  // An error after the first rows arrives in the body's tail.
  if (answer.error) throw new ApiError("refused", answer.error.message ?? String(answer.error));
  return answer as SqlResult;
}

/** The statement's result as CSV text, for download. */
export async function sqlAsCsv(sql: string): Promise<Blob> {
  const response = await post("/api/v1/sql?format=csv", sql, "text/plain");
  return response.blob();
}

export type Operation = "avg" | "sum" | "min" | "max" | "count";

export interface SeriesQuery {
  device_id: string;
  metric_name: string;
  operation: Operation;
  /** Epoch seconds; 0 = open. */
  start_time: number;
  end_time: number;
}

export interface SeriesAnswer extends SeriesQuery {
  result: number | null;
  count: number;
  duration_ns: number;
}

/** The seed's one-aggregate query (`POST /query`). */
export async function seriesQuery(query: SeriesQuery): Promise<SeriesAnswer> {
  const response = await post("/query", JSON.stringify(query), "application/json");
  return (await response.json()) as SeriesAnswer;
}

export interface NodeStatus {
  node_id: string;
  /** joining, active or leaving. */
  state: string;
  /** The failure detector's view of the answering node. */
  alive: boolean;
  addresses: Record<string, string>;
  /** Fraction of the ring the node is primary for. */
  ring_share: number;
  /** Storage figures: the answering node's own; null for the others. */
  disk_bytes: number | null;
  memtable_bytes: number | null;
  points_written: number | null;
  series: number | null;
  files: number | null;
  wal_bytes: number | null;
}

export interface ClusterStatus {
  nodes: NodeStatus[];
  /** The node that answered. */
  node_id: string;
}

/** Every node as the answering node sees it (`GET /api/v1/cluster`). */
export async function clusterStatus(): Promise<ClusterStatus> {
  let response: Response;
  try {
    response = await fetch("/api/v1/cluster");
  } catch (error) {
    throw new ApiError("unreachable", `the node cannot be reached (${String(error)})`);
  }
  noticeUnauthorized(response);
  if (!response.ok) throw new ApiError("refused", `${response.status} ${response.statusText}`, response.status);
  return (await response.json()) as ClusterStatus;
}

export interface Whoami {
  user: string;
  role: "reader" | "writer" | "admin";
  /** False on a node without users (open on loopback). */
  auth_required: boolean;
}

/** Who the browser's session is (`GET /api/v1/whoami`); null when not logged in. */
export async function whoami(): Promise<Whoami | null> {
  let response: Response;
  try {
    response = await fetch("/api/v1/whoami");
  } catch (error) {
    throw new ApiError("unreachable", `the node cannot be reached (${String(error)})`);
  }
  if (response.status === 401) return null;
  if (!response.ok) throw new ApiError("refused", `${response.status} ${response.statusText}`, response.status);
  return (await response.json()) as Whoami;
}

/** Logs in with a user's password; the node keeps the session in an HttpOnly cookie. */
export async function login(user: string, password: string): Promise<void> {
  const response = await fetch("/api/v1/login", {
    method: "POST",
    body: JSON.stringify({ user, password }),
    headers: { "Content-Type": "application/json" },
  });
  if (response.status === 401) throw new ApiError("refused", "wrong user name or password", 401);
  if (!response.ok) throw new ApiError("refused", `${response.status} ${response.statusText}`, response.status);
}

/** Ends the session. */
export async function logout(): Promise<void> {
  await fetch("/api/v1/logout", { method: "POST" });
}

/** A SQL string literal. */
export function sqlString(value: string): string {
  return `'${value.replaceAll("'", "''")}'`;
}

/** A timestamptz literal for epoch `seconds`. */
export function sqlTime(seconds: number): string {
  return `to_timestamp(${seconds})`;
}

/** Epoch milliseconds of a timestamp cell (RFC 3339 text or a number of seconds). */
export function cellTime(cell: Cell): number | null {
  if (typeof cell === "number") return cell * 1000;
  if (typeof cell !== "string") return null;
  const ms = Date.parse(cell);
  return Number.isNaN(ms) ? null : ms;
}

export interface Series {
  device_id: string;
  metric: string;
  first_time: string;
  last_time: string;
  last_value: number;
  points: number;
}

/** Every series with its last value (the `devices` table, kept on ingest). */
export async function listSeries(): Promise<Series[]> {
  const result = await runSql(
    "SELECT device_id, metric, first_time, last_time, last_value, points FROM devices ORDER BY device_id, metric",
  );
  return result.rows.map(([device_id, metric, first_time, last_time, last_value, points]) => ({
    device_id: String(device_id),
    metric: String(metric),
    first_time: String(first_time),
    last_time: String(last_time),
    last_value: Number(last_value),
    points: Number(points),
  }));
}
