// The UI's shell: a page per hash route (#/live, #/query, #/sql, #/devices, #/cluster), and
// the time zone the user reads times in, shared by the pages. On a node with users it asks
// for a login first (and again whenever the node answers 401).
import { useCallback, useEffect, useState } from "react";
import { logout, UNAUTHORIZED_EVENT, whoami, Whoami } from "./api";
import { LoginPage } from "./Login";
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

  // undefined: not known yet; null: the node wants a login.
  const [session, setSession] = useState<Whoami | null | undefined>(undefined);
  const refreshSession = useCallback(() => {
    whoami()
      .then(setSession)
      .catch(() => setSession(undefined));
  }, []);
  useEffect(refreshSession, [refreshSession]);
  useEffect(() => {
    const onUnauthorized = () => setSession(null);
    window.addEventListener(UNAUTHORIZED_EVENT, onUnauthorized);
    return () => window.removeEventListener(UNAUTHORIZED_EVENT, onUnauthorized);
  }, []);

  if (session === null) {
    return (
      <>
        <header>
          <h1>MiniTrue</h1>
        </header>
        <main>
          <LoginPage onLoggedIn={refreshSession} />
        </main>
      </>
    );
  }

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
        {session?.auth_required && (
          <span className="session">
            {session.user} ({session.role}){" "}
            <button type="button" onClick={() => logout().then(() => setSession(null))}>
              Log out
            </button>
          </span>
        )}
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
