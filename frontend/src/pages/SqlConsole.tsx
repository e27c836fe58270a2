// SQL console: any statement over `POST /api/v1/sql`, the result as a table, a chart when it
// has a time column and numeric columns, and CSV download of the same statement.
import { useState } from "react";
import { ApiError, cellTime, runSql, SqlResult, sqlAsCsv } from "../api";
import { Chart, ChartSeries } from "../Chart";

const EXAMPLE = `SELECT time_bucket(INTERVAL '1 minute', time) AS minute, device_id, avg(value) AS avg
FROM readings
WHERE metric = 'temperature' AND time > now() - INTERVAL '1 hour'
GROUP BY 1, 2
ORDER BY 1`;

const TIME_TYPES = new Set(["timestamptz", "timestamp", "date"]);
const NUMBER_TYPES = new Set(["float8", "float4", "int8", "int4", "int2", "numeric"]);
const ROWS_SHOWN = 1000;

/**
 * A chart of `result` when it has a time column and a numeric one: one line per numeric
 * column, or, with a text column beside them, one line per value of it (long format, as
 * `GROUP BY time, device_id` gives).
 */
export function chartOf(result: SqlResult): { x: number[]; series: ChartSeries[] } | null {
  const timeColumn = result.columns.findIndex((c) => TIME_TYPES.has(c.type));
  const numeric = result.columns.map((c, i) => (NUMBER_TYPES.has(c.type) ? i : -1)).filter((i) => i >= 0);
  if (timeColumn < 0 || numeric.length === 0 || result.rows.length === 0) return null;
  const label = result.columns.findIndex((c, i) => i !== timeColumn && c.type === "text");
  const lines = new Map<string, Map<number, number | null>>();
  for (const row of result.rows) {
    const ms = cellTime(row[timeColumn]);
    if (ms === null) continue;
    for (const column of numeric) {
      const name = label >= 0 ? `${row[label]} ${result.columns[column].name}` : result.columns[column].name;
      const line = lines.get(name) ?? new Map();
      const value = row[column];
      line.set(ms / 1000, value === null ? null : Number(value));
      lines.set(name, line);
    }
  }
  const x = [...new Set([...lines.values()].flatMap((l) => [...l.keys()]))].sort((a, b) => a - b);
  const series = [...lines.entries()].slice(0, 24).map(([name, line]) => ({
    label: name,
    values: x.map((t) => line.get(t) ?? null),
  }));
  return { x, series };
}

export function SqlConsolePage() {
  const [sql, setSql] = useState(EXAMPLE);
  const [result, setResult] = useState<SqlResult | null>(null);
  const [error, setError] = useState<ApiError | null>(null);
  const [running, setRunning] = useState(false);

  const run = async () => {
    setRunning(true);
    setError(null);
    setResult(null);
    try {
      setResult(await runSql(sql));
    } catch (e) {
      setError(e instanceof ApiError ? e : new ApiError("refused", String(e)));
    } finally {
      setRunning(false);
    }
  };

  const download = async () => {
    try {
      const blob = await sqlAsCsv(sql);
      const link = document.createElement("a");
      link.href = URL.createObjectURL(blob);
      link.download = "minitrue-result.csv";
      link.click();
      URL.revokeObjectURL(link.href);
    } catch (e) {
      setError(e instanceof ApiError ? e : new ApiError("refused", String(e)));
    }
  };

  const chart = result ? chartOf(result) : null;
  return (
    <section>
      <h2>SQL console</h2>
      <textarea
        name="sql"
        value={sql}
        rows={8}
        spellCheck={false}
        onChange={(e) => setSql(e.target.value)}
        onKeyDown={(e) => {
          if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) void run();
        }}
      />
      <div className="toolbar">
        <button onClick={() => void run()} disabled={running}>
          {running ? "Running…" : "Run (Ctrl+Enter)"}
        </button>
        <button onClick={() => void download()} disabled={running}>
          Download CSV
        </button>
      </div>
      {error && (
        <p className="error" data-testid="sql-error">
          {error.kind === "unreachable" ? "The node cannot be reached: " : "Query error: "}
          {error.message}
        </p>
      )}
      {result && (
        <>
          <p className="note" data-testid="sql-summary">
            {result.row_count} row{result.row_count === 1 ? "" : "s"} in {(result.duration_ns / 1e6).toFixed(2)} ms
            {result.row_count > ROWS_SHOWN ? ` (first ${ROWS_SHOWN} shown)` : ""}
          </p>
          {chart && <Chart x={chart.x} series={chart.series} testId="sql-chart" />}
          {result.row_count === 0 ? (
            <p className="empty">No rows.</p>
          ) : (
            <table className="grid" data-testid="sql-table">
              <thead>
                <tr>
                  {result.columns.map((c) => (
                    <th key={c.name} title={c.type}>
                      {c.name}
                    </th>
                  ))}
                </tr>
              </thead>
              <tbody>
                {result.rows.slice(0, ROWS_SHOWN).map((row, i) => (
                  <tr key={i}>
                    {row.map((cell, j) => (
                      <td key={j}>{cell === null ? <span className="null">NULL</span> : String(cell)}</td>
                    ))}
                  </tr>
                ))}
              </tbody>
            </table>
          )}
        </>
      )}
    </section>
  );
}
