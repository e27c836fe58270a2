// The UI's shell: a page per hash route (#/live, #/query, #/sql, #/devices, #/cluster), and
// the time zone the user reads times in, shared by the pages.
import { useEffect, useState } from "react";
import { ClusterPage } from "./pages/Cluster";
import { DevicesPage } from "./pages/Devices";
import { LivePage } from "./pages/Live";
import { QueryBuilderPage } from "./pages/QueryBuilder";
import { SqlConsolePage } from "./pages/SqlConsole";
import { Zone } from "./timeRange";

const PAGES = [
  { id: "live", label: "Live" },
  { id: "query", label: "Query builder" },
  { id: "sql", label: "SQL console" },
  { id: "devices", label: "Devices" },
  { id: "cluster", label: "Cluster" },
] as const;

type PageId = (typeof PAGES)[number]["id"];

function currentPage(): PageId {
  const id = window.location.hash.replace(/^#\/?/, "");
  return PAGES.some((p) => p.id === id) ? (id as PageId) : "live";
}

export function App() {
  const [page, setPage] = useState<PageId>(currentPage);
  const [zone, setZone] = useState<Zone>(() => (localStorage.getItem("minitrue-zone") === "utc" ? "utc" : "local"));

  useEffect(() => {
    const onHash = () => setPage(currentPage());
    window.addEventListener("hashchange", onHash);
    return () => window.removeEventListener("hashchange", onHash);
  }, []);

  useEffect(() => localStorage.setItem("minitrue-zone", zone), [zone]);

  return (
    <>
      <header>
        <h1>MiniTrue</h1>
        <nav>
          {PAGES.map((p) => (
            <a key={p.id} href={`#/${p.id}`} className={p.id === page ? "active" : ""}>
              {p.label}
            </a>
          ))}
        </nav>
        <label className="zone">
          Times in
          <select value={zone} onChange={(e) => setZone(e.target.value as Zone)} name="zone">
            <option value="local">local time</option>
            <option value="utc">UTC</option>
          </select>
        </label>
      </header>
      <main>
        {page === "live" && <LivePage />}
        {page === "query" && <QueryBuilderPage zone={zone} />}
        {page === "sql" && <SqlConsolePage />}
        {page === "devices" && <DevicesPage zone={zone} />}
        {page === "cluster" && <ClusterPage />}
      </main>
    </>
  );
}
