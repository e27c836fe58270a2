// The web UI's login and the browser's view of a node's doors, in a real browser (Debian's
// Chromium driven by playwright-core). Run by tests/ui/test_ui_security.py, which passes:
//   SECURED_URL   a node with users (http://127.0.0.1:port)
//   UI_USER, UI_PASSWORD   a user of that node
//   OPEN_URL      a node without users (open on loopback)
//   OTHER_ORIGIN  a page served from another origin (http://127.0.0.1:other-port/)
//   ARTIFACTS, CHROMIUM   as for ui.test.mjs
import { mkdirSync } from "node:fs";
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { chromium } from "playwright-core";

const { SECURED_URL, UI_USER, UI_PASSWORD, OPEN_URL, OTHER_ORIGIN } = process.env;
const ARTIFACTS = process.env.ARTIFACTS ?? "ui-artifacts";
assert.ok(SECURED_URL && UI_USER && UI_PASSWORD && OPEN_URL && OTHER_ORIGIN, "the environment is incomplete");
mkdirSync(ARTIFACTS, { recursive: true });

let browser;

before(async () => {
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-dev-shm-usage"],
  });
});

after(async () => {
  await browser?.close();
});

test("a node with users asks for a login, refuses a wrong password and keeps the session", async () => {
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(`${SECURED_URL}/#/sql`);
  const form = page.getByRole("form", { name: "log in" });
  await form.waitFor({ timeout: 15_000 });
  await page.screenshot({ path: `${ARTIFACTS}/login.png`, fullPage: true });
  await form.getByLabel("User").fill(UI_USER);
  await form.getByLabel("Password").fill("not the password");
  await form.getByRole("button", { name: "Log in" }).click();
  await page.getByRole("alert").filter({ hasText: "wrong user name or password" }).waitFor();
  await form.getByLabel("Password").fill(UI_PASSWORD);
  await form.getByRole("button", { name: "Log in" }).click();
  await page.getByText(`${UI_USER} (admin)`).waitFor({ timeout: 15_000 });
  const cookies = await context.cookies();
  const session = cookies.find((c) => c.name === "minitrue_session");
  assert.ok(session, "a session cookie");
  assert.equal(session.httpOnly, true);
  assert.equal(session.sameSite, "Strict");
  // The page's script cannot read it.
  assert.equal(await page.evaluate(() => document.cookie.includes("minitrue_session")), false);
  // The console runs SQL with the session.
  const answer = await page.evaluate(async () => {
    const response = await fetch("/api/v1/sql?format=json", { method: "POST", body: "SELECT 40 + 2 AS n" });
    return [response.status, await response.json()];
  });
  assert.equal(answer[0], 200);
  assert.deepEqual(answer[1].rows, [[42]]);
  await page.getByRole("button", { name: "Log out" }).click();
  await form.waitFor();
  await context.close();
});

test("a page on another origin cannot use an open node through the browser", async () => {
  const page = await browser.newPage();
  await page.goto(OTHER_ORIGIN);
  const results = await page.evaluate(async (node) => {
    const attempts = {};
    // A simple request (no preflight): the browser sends it, the node must refuse it.
    try {
      const response = await fetch(`${node}/api/v1/sql`, {
        method: "POST",
        body: "DELETE FROM readings WHERE device_id = 'ui-victim'",
        mode: "no-cors",
      });
      attempts.noCors = response.type;
    } catch (error) {
      attempts.noCors = String(error);
    }
    // A readable request: CORS is never granted, so the page learns nothing.
    try {
      const response = await fetch(`${node}/api/v1/sql`, { method: "POST", body: "SELECT 1" });
      attempts.cors = response.status;
    } catch (error) {
      attempts.cors = "blocked";
    }
    return attempts;
  }, OPEN_URL);
  assert.equal(results.cors, "blocked");
  await page.close();
});
