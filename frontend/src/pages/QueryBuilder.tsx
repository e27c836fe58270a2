// The seed's query builder: one series, one aggregate, a preset or custom time range, answered
// by `POST /query`; plus a chart of the series bucketed over the same range (SQL time_bucket).
import { useEffect, useState } from "react";
import { ApiError, cellTime, listSeries, Operation, runSql, Series, SeriesAnswer, seriesQuery, sqlString, sqlTime } from "../api";
import { Chart, ChartSeries } from "../Chart";
import {
  bucketFor,
  customRange,
  formatEpoch,
  PresetId,
  PRESETS,
  presetRange,
  splitEpoch,
  TimeRange,
  Zone,
} from "../timeRange";

const OPERATIONS: Operation[] = ["avg", "sum", "min", "max", "count"];

type RangeChoice = PresetId | "custom";

export function QueryBuilderPage({ zone }: { zone: Zone }) {
  const [series, setSeries] = useState<Series[]>([]);
  const [loadError, setLoadError] = useState<ApiError | null>(null);
  const [device, setDevice] = useState("");
  const [metric, setMetric] = useState("");
  const [operation, setOperation] = useState<Operation>("avg");
  const [choice, setChoice] = useState<RangeChoice>("hour");
  const now = splitEpoch(Math.floor(Date.now() / 1000), zone);
  const hourAgo = splitEpoch(Math.floor(Date.now() / 1000) - 3600, zone);
  const [custom, setCustom] = useState({ startDate: hourAgo.date, startTime: hourAgo.time, endDate: now.date, endTime: now.time });
  const [answer, setAnswer] = useState<SeriesAnswer | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [chart, setChart] = useState<{ x: number[]; series: ChartSeries[]; bucket: string } | null>(null);
  const [running, setRunning] = useState(false);

  useEffect(() => {
    listSeries()
      .then((all) => {
        setSeries(all);
        if (all.length > 0) {
          setDevice((d) => d || all[0].device_id);
          setMetric((m) => m || all[0].metric);
        }
      })
      .catch((e: ApiError) => setLoadError(e));
  }, []);

  const devices = [...new Set(series.map((s) => s.device_id))];
  const metrics = [...new Set(series.filter((s) => s.device_id === device).map((s) => s.metric))];

  const run = async () => {
    setError(null);
    setAnswer(null);
    setChart(null);
    let range: TimeRange | string;
    if (choice === "custom") {
      range = customRange(custom.startDate, custom.startTime, custom.endDate, custom.endTime, zone);
    } else {
      range = presetRange(choice, new Date());
    }
    if (typeof range === "string") {
      setError(range);
      return;
    }
    setRunning(true);
    try {
      const result = await seriesQuery({ device_id: device, metric_name: metric, operation, start_time: range.start, end_time: range.end });
      setAnswer(result);
      setChart(await bucketedSeries(device, metric, operation, range, series));
    } catch (e) {
      setError(e instanceof ApiError ? e.message : String(e));
    } finally {
      setRunning(false);
    }
  };

  if (loadError) return <p className="error">Cannot list the series: {loadError.message}</p>;

  return (
    <section>
      <h2>Query builder</h2>
      <form
        className="form"
        onSubmit={(event) => {
          event.preventDefault();
          void run();
        }}
      >
        <label>
          Device
          <select name="device" value={device} onChange={(e) => setDevice(e.target.value)}>
            {devices.map((d) => (
              <option key={d} value={d}>
                {d}
              </option>
            ))}
          </select>
        </label>
        <label>
          Metric
          <select name="metric" value={metric} onChange={(e) => setMetric(e.target.value)}>
            {metrics.map((m) => (
              <option key={m} value={m}>
                {m}
              </option>
            ))}
          </select>
        </label>
        <label>
          Operation
          <select name="operation" value={operation} onChange={(e) => setOperation(e.target.value as Operation)}>
            {OPERATIONS.map((o) => (
              <option key={o} value={o}>
                {o}
              </option>
            ))}
          </select>
        </label>
        <fieldset className="presets">
          <legend>Time range</legend>
          {PRESETS.map((p) => (
            <label key={p.id}>
              <input type="radio" name="range" value={p.id} checked={choice === p.id} onChange={() => setChoice(p.id)} />
              {p.label}
            </label>
          ))}
          <label>
            <input type="radio" name="range" value="custom" checked={choice === "custom"} onChange={() => setChoice("custom")} />
            Custom
          </label>
        </fieldset>
        {choice === "custom" && (
          <fieldset className="custom-range">
            <legend>Custom range ({zone === "utc" ? "UTC" : "local time"}, 12-hour clock)</legend>
            <label>
              From <input type="date" name="start-date" value={custom.startDate} onChange={(e) => setCustom({ ...custom, startDate: e.target.value })} />
            </label>
            <input name="start-time" value={custom.startTime} placeholder="7:05 PM" onChange={(e) => setCustom({ ...custom, startTime: e.target.value })} />
            <label>
              To <input type="date" name="end-date" value={custom.endDate} onChange={(e) => setCustom({ ...custom, endDate: e.target.value })} />
            </label>
            <input name="end-time" value={custom.endTime} placeholder="8:05 PM" onChange={(e) => setCustom({ ...custom, endTime: e.target.value })} />
          </fieldset>
        )}
        <button type="submit" disabled={running || !device || !metric}>
          {running ? "Running…" : "Run query"}
        </button>
      </form>
      {error && (
        <p className="error" data-testid="query-error">
          {error}
        </p>
      )}
      {answer && (
        <dl className="answer" data-testid="query-answer">
          <dt>Result</dt>
          <dd data-testid="query-result">{answer.result === null ? "no points" : answer.result}</dd>
          <dt>Points</dt>
          <dd data-testid="query-count">{answer.count}</dd>
          <dt>Duration</dt>
          <dd>{(answer.duration_ns / 1e6).toFixed(2)} ms</dd>
          <dt>Range</dt>
          <dd>
            {answer.start_time === 0 ? "the beginning" : formatEpoch(answer.start_time, zone)} –{" "}
            {answer.end_time === 0 ? "now" : formatEpoch(answer.end_time, zone)}
          </dd>
        </dl>
      )}
      {chart &&
        (chart.x.length === 0 ? (
          <p className="empty">No points in this range.</p>
        ) : (
          <>
            <p className="note">
              {operation} per {chart.bucket}
            </p>
            <Chart x={chart.x} series={chart.series} utc={zone === "utc"} testId="query-chart" />
          </>
        ))}
    </section>
  );
}

/** The series' `operation` per time bucket over `range` (open ends: the series' own extent). */
async function bucketedSeries(
  device: string,
  metric: string,
  operation: Operation,
  range: TimeRange,
  all: Series[],
): Promise<{ x: number[]; series: ChartSeries[]; bucket: string }> {
  const known = all.find((s) => s.device_id === device && s.metric === metric);
  const first = known ? Math.floor((cellTime(known.first_time) ?? 0) / 1000) : 0;
  const last = known ? Math.ceil((cellTime(known.last_time) ?? 0) / 1000) : Math.floor(Date.now() / 1000);
  const start = range.start || first;
  const end = range.end || last;
  const bucket = bucketFor(Math.max(end - start, 1));
  const sql =
    `SELECT time_bucket(INTERVAL '${bucket.interval}', time) AS bucket, ${operation}(value) AS value ` +
    `FROM readings WHERE device_id = ${sqlString(device)} AND metric = ${sqlString(metric)} ` +
    `AND time >= ${sqlTime(start)} AND time <= ${sqlTime(end)} GROUP BY 1 ORDER BY 1`;
  const result = await runSql(sql);
  const x: number[] = [];
  const values: (number | null)[] = [];
  for (const [time, value] of result.rows) {
    const ms = cellTime(time);
    if (ms === null) continue;
    x.push(ms / 1000);
    values.push(value === null ? null : Number(value));
  }
  return { x, series: [{ label: `${operation}(${device}:${metric})`, values }], bucket: bucket.interval };
}
