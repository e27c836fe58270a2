// Devices: every series with its last value and when it was last seen (the `devices` table,
// kept on ingest), stale ones highlighted; and deleting a series, optionally only a range.
import { useCallback, useEffect, useState } from "react";
import { ApiError, cellTime, listSeries, runSql, Series, sqlString, sqlTime } from "../api";
import { customRange, formatEpoch, Zone } from "../timeRange";

const STALE_CHOICES = [
  { seconds: 60, label: "1 minute" },
  { seconds: 300, label: "5 minutes" },
  { seconds: 3600, label: "1 hour" },
  { seconds: 86_400, label: "1 day" },
];

/** How long ago `ms` was, as `42 s`, `5 min`, `3 h` or `2 d`. */
export function ago(ms: number, now: number): string {
  const seconds = Math.max(0, Math.round((now - ms) / 1000));
  if (seconds < 120) return `${seconds} s`;
  if (seconds < 7200) return `${Math.round(seconds / 60)} min`;
  if (seconds < 172_800) return `${Math.round(seconds / 3600)} h`;
  return `${Math.round(seconds / 86_400)} d`;
}

interface DeleteRequest {
  series: Series;
  ranged: boolean;
  startDate: string;
  startTime: string;
  endDate: string;
  endTime: string;
}

export function DevicesPage({ zone }: { zone: Zone }) {
  const [series, setSeries] = useState<Series[] | null>(null);
  const [error, setError] = useState<ApiError | null>(null);
  const [staleAfter, setStaleAfter] = useState(300);
  const [now, setNow] = useState(Date.now());
  const [deleting, setDeleting] = useState<DeleteRequest | null>(null);
  const [deleteError, setDeleteError] = useState<string | null>(null);
  const [notice, setNotice] = useState<string | null>(null);

  const refresh = useCallback(() => {
    listSeries()
      .then((all) => {
        setSeries(all);
        setError(null);
        setNow(Date.now());
      })
      .catch((e: ApiError) => setError(e));
  }, []);

  useEffect(() => {
    refresh();
    const timer = setInterval(refresh, 5000);
    return () => clearInterval(timer);
  }, [refresh]);

  const confirmDelete = async () => {
    if (!deleting) return;
    const { series: target } = deleting;
    let condition = `device_id = ${sqlString(target.device_id)} AND metric = ${sqlString(target.metric)}`;
    if (deleting.ranged) {
      const range = customRange(deleting.startDate, deleting.startTime, deleting.endDate, deleting.endTime, zone);
      if (typeof range === "string") {
        setDeleteError(range);
        return;
      }
      condition += ` AND time >= ${sqlTime(range.start)} AND time <= ${sqlTime(range.end)}`;
    }
    try {
      const result = await runSql(`DELETE FROM readings WHERE ${condition}`);
      const deleted = result.rows[0]?.[0] ?? 0;
      setNotice(`Deleted ${deleted} points of ${target.device_id}:${target.metric}.`);
      setDeleting(null);
      setDeleteError(null);
      refresh();
    } catch (e) {
      setDeleteError(e instanceof ApiError ? e.message : String(e));
    }
  };

  if (error && !series) return <p className="error">Cannot list the devices: {error.message}</p>;
  if (!series) return <p>Loading…</p>;

  return (
    <section>
      <h2>Devices</h2>
      <div className="toolbar">
        <label>
          Stale after
          <select value={staleAfter} onChange={(e) => setStaleAfter(Number(e.target.value))} name="stale-after">
            {STALE_CHOICES.map((c) => (
              <option key={c.seconds} value={c.seconds}>
                {c.label}
              </option>
            ))}
          </select>
        </label>
        <span>
          {series.length} series, {series.filter((s) => now - (cellTime(s.last_time) ?? 0) > staleAfter * 1000).length} stale
        </span>
        {error && <span className="error">refresh failed: {error.message}</span>}
      </div>
      {notice && (
        <p className="notice" data-testid="devices-notice">
          {notice}
        </p>
      )}
      {series.length === 0 ? (
        <p className="empty">No series yet.</p>
      ) : (
        <table className="grid" data-testid="devices-table">
          <thead>
            <tr>
              <th>Device</th>
              <th>Metric</th>
              <th>Last value</th>
              <th>Last seen</th>
              <th>Points</th>
              <th></th>
            </tr>
          </thead>
          <tbody>
            {series.map((s) => {
              const last = cellTime(s.last_time) ?? 0;
              const stale = now - last > staleAfter * 1000;
              return (
                <tr key={`${s.device_id}:${s.metric}`} className={stale ? "stale" : ""} data-series={`${s.device_id}:${s.metric}`}>
                  <td>{s.device_id}</td>
                  <td>{s.metric}</td>
                  <td>{s.last_value}</td>
                  <td title={formatEpoch(last / 1000, zone)}>{ago(last, now)} ago</td>
                  <td>{s.points}</td>
                  <td>
                    <button
                      className="danger"
                      onClick={() => {
                        const end = new Date();
                        const pad = (n: number) => String(n).padStart(2, "0");
                        const today = `${end.getFullYear()}-${pad(end.getMonth() + 1)}-${pad(end.getDate())}`;
                        setDeleteError(null);
                        setDeleting({ series: s, ranged: false, startDate: today, startTime: "12:00 AM", endDate: today, endTime: "11:59:59 PM" });
                      }}
                    >
                      Delete…
                    </button>
                  </td>
                </tr>
              );
            })}
          </tbody>
        </table>
      )}
      {deleting && (
        <div className="dialog" role="dialog" aria-label="Confirm delete">
          <p>
            Delete the points of <strong>{deleting.series.device_id}</strong> / <strong>{deleting.series.metric}</strong>
            {deleting.ranged ? " in this range" : " (all of them)"}? This cannot be undone.
          </p>
          <label>
            <input type="checkbox" name="ranged" checked={deleting.ranged} onChange={(e) => setDeleting({ ...deleting, ranged: e.target.checked })} />
            Only a time range ({zone === "utc" ? "UTC" : "local time"})
          </label>
          {deleting.ranged && (
            <div className="custom-range">
              <input type="date" name="delete-start-date" value={deleting.startDate} onChange={(e) => setDeleting({ ...deleting, startDate: e.target.value })} />
              <input name="delete-start-time" value={deleting.startTime} onChange={(e) => setDeleting({ ...deleting, startTime: e.target.value })} />
              <span>to</span>
              <input type="date" name="delete-end-date" value={deleting.endDate} onChange={(e) => setDeleting({ ...deleting, endDate: e.target.value })} />
              <input name="delete-end-time" value={deleting.endTime} onChange={(e) => setDeleting({ ...deleting, endTime: e.target.value })} />
            </div>
          )}
          {deleteError && <p className="error">{deleteError}</p>}
          <div className="toolbar">
            <button className="danger" onClick={() => void confirmDelete()}>
              Delete
            </button>
            <button onClick={() => setDeleting(null)}>Cancel</button>
          </div>
        </div>
      )}
    </section>
  );
}
