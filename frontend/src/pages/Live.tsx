// Live monitor: points as the node stores them, over the `/ws/live` WebSocket. The node
// rate-limits what it sends (at most one point per series per tick, at most `max_rate` points
// a second) and reports how many points matched, so the rate shown is the real ingest rate
// even when most points are not sent.
import { useEffect, useMemo, useRef, useState } from "react";
import { Chart } from "../Chart";

/** A point as the node sends it: device, metric, epoch ms, value. */
type LivePoint = [string, string, number, number];

interface LiveMessage {
  type: "hello" | "points";
  points?: LivePoint[];
  matched?: number;
  dropped?: number;
  interval_ms?: number;
  max_rate?: number;
}

const WINDOW_SECONDS = 300;
const MAX_SERIES = 24;

export function liveUrl(device: string, metric: string, maxRate: number): string {
  const scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
  const params = new URLSearchParams();
  if (device.trim()) params.set("device", device.trim());
  if (metric.trim()) params.set("metric", metric.trim());
  params.set("max_rate", String(maxRate));
  return `${scheme}//${window.location.host}/ws/live?${params}`;
}

export function LivePage() {
  const [device, setDevice] = useState("");
  const [metric, setMetric] = useState("");
  const [filter, setFilter] = useState({ device: "", metric: "" });
  const [status, setStatus] = useState<"connecting" | "open" | "closed">("connecting");
  const [rate, setRate] = useState(0);
  const [received, setReceived] = useState(0);
  const [hidden, setHidden] = useState<Set<string>>(new Set());
  const [latest, setLatest] = useState<Map<string, { time: number; value: number }>>(new Map());
  // Per series: [epoch s, value] within the window. Kept in a ref; `tick` re-renders.
  const history = useRef<Map<string, [number, number][]>>(new Map());
  const [tick, setTick] = useState(0);

  useEffect(() => {
    history.current = new Map();
    setLatest(new Map());
    setReceived(0);
    let socket: WebSocket | null = null;
    let retry: ReturnType<typeof setTimeout> | undefined;
    let stopped = false;
    const connect = () => {
      setStatus("connecting");
      socket = new WebSocket(liveUrl(filter.device, filter.metric, 500));
      socket.onopen = () => setStatus("open");
      socket.onclose = () => {
        setStatus("closed");
        if (!stopped) retry = setTimeout(connect, 2000);
      };
      socket.onmessage = (event) => {
        const message = JSON.parse(event.data) as LiveMessage;
        if (message.type !== "points") return;
        const intervalMs = message.interval_ms ?? 250;
        setRate(((message.matched ?? 0) * 1000) / intervalMs);
        const points = message.points ?? [];
        if (points.length === 0) return;
        setReceived((n) => n + points.length);
        const now = Date.now() / 1000;
        const series = history.current;
        const updates = new Map<string, { time: number; value: number }>();
        for (const [dev, met, ms, value] of points) {
          const key = `${dev}:${met}`;
          if (!series.has(key) && series.size >= MAX_SERIES) continue;
          const values = series.get(key) ?? [];
          values.push([ms / 1000, value]);
          while (values.length > 0 && values[0][0] < now - WINDOW_SECONDS) values.shift();
          series.set(key, values);
          updates.set(key, { time: ms, value });
        }
        setLatest((old) => new Map([...old, ...updates]));
        setTick((t) => t + 1);
      };
    };
    connect();
    return () => {
      stopped = true;
      clearTimeout(retry);
      socket?.close();
    };
  }, [filter]);

  const keys = useMemo(() => [...latest.keys()].sort(), [latest]);
  const chart = useMemo(() => {
    const times = new Set<number>();
    for (const key of keys) for (const [t] of history.current.get(key) ?? []) times.add(t);
    const x = [...times].sort((a, b) => a - b);
    const index = new Map(x.map((t, i) => [t, i]));
    const series = keys.map((key) => {
      const values: (number | null)[] = new Array(x.length).fill(null);
      for (const [t, v] of history.current.get(key) ?? []) values[index.get(t)!] = v;
      return { label: key, values, show: !hidden.has(key) };
    });
    return { x, series };
    // `tick` stands for history changes.
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [keys, hidden, tick]);

  const toggle = (key: string) =>
    setHidden((old) => {
      const next = new Set(old);
      if (next.has(key)) next.delete(key);
      else next.add(key);
      return next;
    });

  return (
    <section>
      <h2>Live monitor</h2>
      <form
        className="toolbar"
        onSubmit={(event) => {
          event.preventDefault();
          setFilter({ device, metric });
        }}
      >
        <label>
          Device <input value={device} onChange={(e) => setDevice(e.target.value)} placeholder="all" name="device" />
        </label>
        <label>
          Metric <input value={metric} onChange={(e) => setMetric(e.target.value)} placeholder="all" name="metric" />
        </label>
        <button type="submit">Apply</button>
        <span className={`status status-${status}`} data-testid="live-status">
          {status === "open" ? "connected" : status === "connecting" ? "connecting…" : "disconnected, retrying"}
        </span>
        <span className="rate" data-testid="live-rate">
          {rate.toFixed(0)} points/s
        </span>
        <span data-testid="live-received">{received} points shown</span>
      </form>
      {status === "closed" && <p className="error">The node cannot be reached; reconnecting every 2 s.</p>}
      {keys.length === 0 ? (
        <p className="empty">No points yet{filter.device || filter.metric ? " for this filter" : ""}.</p>
      ) : (
        <>
          <Chart x={chart.x} series={chart.series} testId="live-chart" />
          <table className="grid" data-testid="live-table">
            <thead>
              <tr>
                <th>Show</th>
                <th>Series</th>
                <th>Last value</th>
                <th>At</th>
              </tr>
            </thead>
            <tbody>
              {keys.map((key) => {
                const last = latest.get(key)!;
                return (
                  <tr key={key}>
                    <td>
                      <input type="checkbox" checked={!hidden.has(key)} onChange={() => toggle(key)} aria-label={`show ${key}`} />
                    </td>
                    <td>{key}</td>
                    <td>{last.value}</td>
                    <td>{new Date(last.time).toLocaleTimeString()}</td>
                  </tr>
                );
              })}
            </tbody>
          </table>
        </>
      )}
    </section>
  );
}
