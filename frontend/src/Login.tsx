// The login form, shown when the node has users and the browser has no session.
import { FormEvent, useState } from "react";
import { login } from "./api";

export function LoginPage({ onLoggedIn }: { onLoggedIn: () => void }) {
  const [user, setUser] = useState("");
  const [password, setPassword] = useState("");
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  async function submit(event: FormEvent) {
    event.preventDefault();
    setBusy(true);
    setError(null);
    try {
      await login(user, password);
      setPassword("");
      onLoggedIn();
    } catch (e) {
      setError(e instanceof Error ? e.message : String(e));
    } finally {
      setBusy(false);
    }
  }

  return (
    <form className="login" onSubmit={submit} aria-label="log in">
      <h2>Log in</h2>
      <p>This node asks who you are. Use a user made with <code>minitrue user add</code>.</p>
      <label>
        User
        <input name="user" autoComplete="username" value={user} onChange={(e) => setUser(e.target.value)} required />
      </label>
      <label>
        Password
        <input
          name="password"
          type="password"
          autoComplete="current-password"
          value={password}
          onChange={(e) => setPassword(e.target.value)}
          required
        />
      </label>
      <button type="submit" disabled={busy}>
        Log in
      </button>
      {error && <p className="error" role="alert">{error}</p>}
    </form>
  );
}
