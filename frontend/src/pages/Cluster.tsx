// Cluster: every node as the answering node sees it, with its ring share, disk and memtable
// use, and ingest rate (from the change in points written between two polls).
import { useEffect, useRef, useState } from "react";
import { ApiError, clusterStatus, ClusterStatus } from "../api";

export function bytes(n: number | null): string {
  if (n === null) return "—";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = n;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value.toFixed(unit === 0 ? 0 : 1)} ${units[unit]}`;
}

const POLL_MS = 2000;

export function ClusterPage() {
  const [status, setStatus] = useState<ClusterStatus | null>(null);
  const [error, setError] = useState<ApiError | null>(null);
  const [rates, setRates] = useState<Map<string, number>>(new Map());
  const previous = useRef<{ at: number; written: Map<string, number> } | null>(null);

  useEffect(() => {
    const poll = () =>
      clusterStatus()
        .then((answer) => {
          const at = Date.now();
          const written = new Map(
            answer.nodes.filter((n) => n.points_written !== null).map((n) => [n.node_id, n.points_written as number]),
          );
          const before = previous.current;
          if (before) {
            const seconds = (at - before.at) / 1000;
            setRates(
              new Map(
                answer.nodes
                  .filter((n) => n.points_written !== null && before.written.has(n.node_id))
                  .map((n) => [n.node_id, Math.max(0, ((n.points_written as number) - before.written.get(n.node_id)!) / seconds)]),
              ),
            );
          }
          previous.current = { at, written };
          setStatus(answer);
          setError(null);
        })
        .catch((e: ApiError) => setError(e));
    poll();
    const timer = setInterval(poll, POLL_MS);
    return () => clearInterval(timer);
  }, []);

  return (
    <section>
      <h2>Cluster</h2>
      {error && <p className="error">The node cannot be reached: {error.message}</p>}
      {status && (
        <table className="grid" data-testid="cluster-table">
          <thead>
            <tr>
              <th>Node</th>
              <th>State</th>
              <th>Addresses</th>
              <th>Ring share</th>
              <th>Series</th>
              <th>Disk</th>
              <th>Memtables</th>
              <th>WAL</th>
              <th>Ingest</th>
            </tr>
          </thead>
          <tbody>
            {status.nodes.map((n) => (
              <tr key={n.node_id} data-node={n.node_id}>
                <td>
                  {n.node_id}
                  {n.node_id === status.node_id ? " (this node)" : ""}
                </td>
                <td>{n.alive === false ? `${n.state}, down` : n.state}</td>
                <td className="addresses">
                  {Object.entries(n.addresses)
                    .map(([door, address]) => `${door} ${address}`)
                    .join(", ")}
                </td>
                <td>{(n.ring_share * 100).toFixed(1)} %</td>
                <td>{n.series ?? "—"}</td>
                <td>{n.disk_bytes === null ? "—" : `${bytes(n.disk_bytes)} in ${n.files} files`}</td>
                <td>{bytes(n.memtable_bytes)}</td>
                <td>{bytes(n.wal_bytes)}</td>
                <td data-testid="ingest-rate">{n.points_written === null ? "—" : rates.has(n.node_id) ? `${rates.get(n.node_id)!.toFixed(0)} points/s` : "…"}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}
