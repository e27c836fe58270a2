// The web UI in a real browser (Debian's Chromium driven by playwright-core) against a real
// node with simulated sensors: run by tests/ui/test_ui.py, which starts the node, seeds the
// `ui-*` series and passes:
//   MINITRUE_URL  the node's HTTP address (http://127.0.0.1:port)
//   PG_PORT       its Postgres port, for psql cross-checks
//   ARTIFACTS     where screenshots go
//   CHROMIUM      the browser binary (default /usr/bin/chromium)
import { execFileSync } from "node:child_process";
import { mkdirSync } from "node:fs";
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { chromium } from "playwright-core";

const URL = process.env.MINITRUE_URL;
const PG_PORT = process.env.PG_PORT;
const ARTIFACTS = process.env.ARTIFACTS ?? "ui-artifacts";
assert.ok(URL && PG_PORT, "MINITRUE_URL and PG_PORT must be set");
mkdirSync(ARTIFACTS, { recursive: true });

let browser;
let page;
const consoleErrors = [];

before(async () => {
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-dev-shm-usage"],
  });
  page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  page.on("console", (message) => {
    if (message.type() === "error") consoleErrors.push(message.text());
  });
  page.on("pageerror", (error) => consoleErrors.push(String(error)));
  // Times in UTC so the custom range below is unambiguous.
  await page.goto(`${URL}/#/live`);
  await page.evaluate(() => localStorage.setItem("minitrue-zone", "utc"));
});

after(async () => {
  await browser?.close();
});

/** psql's unaligned, tuples-only answer. */
function psql(sql) {
  return execFileSync("psql", ["-h", "127.0.0.1", "-p", PG_PORT, "-U", "minitrue", "-d", "minitrue", "-X", "-At", "-c", sql], {
    encoding: "utf8",
  }).trim();
}

async function screenshot(name) {
  await page.screenshot({ path: `${ARTIFACTS}/${name}.png`, fullPage: true });
}

test("the live monitor shows points arriving from the simulator", async () => {
  await page.goto(`${URL}/#/live`);
  await page.reload();
  await page.getByTestId("live-status").filter({ hasText: "connected" }).waitFor({ timeout: 15_000 });
  await page.getByTestId("live-chart").locator("canvas").first().waitFor({ timeout: 15_000 });
  const firstCount = Number((await page.getByTestId("live-received").textContent()).split(" ")[0]);
  // More points keep arriving (the simulator publishes every second).
  await page.waitForFunction(
    (before) => Number(document.querySelector('[data-testid="live-received"]').textContent.split(" ")[0]) > before,
    firstCount,
    { timeout: 15_000 },
  );
  const rows = await page.getByTestId("live-table").locator("tbody tr").count();
  assert.ok(rows >= 3, `${rows} live series`);
  const rate = Number((await page.getByTestId("live-rate").textContent()).split(" ")[0]);
  assert.ok(rate > 0, `rate ${rate}`);
  // Per-sensor toggle: hiding a series unchecks it and keeps the others.
  const toggle = page.getByRole("checkbox", { name: "show sensor_1:temperature" });
  await toggle.uncheck();
  assert.equal(await toggle.isChecked(), false);
  await screenshot("live");
});

test("the query builder answers what psql answers, for All and a custom 12-hour range", async () => {
  await page.goto(`${URL}/#/query`);
  await page.locator('select[name="device"] option[value="ui-seeded"]').waitFor({ state: "attached" });
  await page.selectOption('select[name="device"]', "ui-seeded");
  await page.selectOption('select[name="metric"]', "temperature");
  await page.selectOption('select[name="operation"]', "avg");
  await page.check('input[name="range"][value="all"]');
  await page.click('button[type="submit"]');
  await page.getByTestId("query-answer").waitFor();
  const expected = psql("SELECT avg(value), count(*) FROM readings WHERE device_id = 'ui-seeded' AND metric = 'temperature'").split("|");
  assert.equal(Number(await page.getByTestId("query-result").textContent()), Number(expected[0]));
  assert.equal(await page.getByTestId("query-count").textContent(), expected[1]);
  await page.getByTestId("query-chart").locator("canvas").first().waitFor();

  // 2026-03-04 10:00 AM to 10:30 AM UTC, typed in the seed's 12-hour form.
  await page.selectOption('select[name="operation"]', "max");
  await page.check('input[name="range"][value="custom"]');
  await page.fill('input[name="start-date"]', "2026-03-04");
  await page.fill('input[name="start-time"]', "10:00 AM");
  await page.fill('input[name="end-date"]', "2026-03-04");
  await page.fill('input[name="end-time"]', "10:30 AM");
  await page.click('button[type="submit"]');
  await page.getByTestId("query-answer").waitFor();
  const ranged = psql(
    "SELECT max(value), count(*) FROM readings WHERE device_id = 'ui-seeded' AND metric = 'temperature' " +
      "AND time >= '2026-03-04 10:00:00+00' AND time <= '2026-03-04 10:30:00+00'",
  ).split("|");
  assert.equal(Number(await page.getByTestId("query-result").textContent()), Number(ranged[0]));
  assert.equal(await page.getByTestId("query-count").textContent(), ranged[1]);
  assert.equal(ranged[1], "31", "one point a minute, both ends included");

  // A bad time is refused in the form, with the reason.
  await page.fill('input[name="end-time"]', "13:30 PM");
  await page.click('button[type="submit"]');
  assert.match(await page.getByTestId("query-error").textContent(), /end: time "13:30 PM"/);
  await screenshot("query-builder");
});

test("the SQL console renders a table and a chart, and shows errors and empty results", async () => {
  await page.goto(`${URL}/#/sql`);
  await page.fill('textarea[name="sql"]', "SELECT time, value FROM readings WHERE device_id = 'ui-seeded' ORDER BY time");
  await page.getByRole("button", { name: /^Run/ }).click();
  await page.getByTestId("sql-chart").locator("canvas").first().waitFor();
  const rows = await page.getByTestId("sql-table").locator("tbody tr").count();
  assert.equal(String(rows), psql("SELECT count(*) FROM readings WHERE device_id = 'ui-seeded'"));
  await screenshot("sql-console");

  await page.fill('textarea[name="sql"]', "SELECT no_such_column FROM readings");
  await page.getByRole("button", { name: /^Run/ }).click();
  assert.match(await page.getByTestId("sql-error").textContent(), /Query error: .*no_such_column/);

  await page.fill('textarea[name="sql"]', "SELECT value FROM readings WHERE false");
  await page.getByRole("button", { name: /^Run/ }).click();
  await page.getByText("No rows.").waitFor();

  // The node unreachable: the request fails in the network, the page says so.
  await page.route("**/api/v1/sql**", (route) => route.abort("connectionrefused"));
  await page.getByRole("button", { name: /^Run/ }).click();
  assert.match(await page.getByTestId("sql-error").textContent(), /cannot be reached/);
  await page.unroute("**/api/v1/sql**");
});

test("deleting a series from the devices page removes its data", async () => {
  assert.notEqual(psql("SELECT count(*) FROM readings WHERE device_id = 'ui-doomed'"), "0");
  await page.goto(`${URL}/#/devices`);
  const row = page.locator('tr[data-series="ui-doomed:temperature"]');
  await row.waitFor();
  await row.getByRole("button", { name: "Delete…" }).click();
  const dialog = page.getByRole("dialog", { name: "Confirm delete" });
  await dialog.waitFor();
  await screenshot("delete-confirm");
  await dialog.getByRole("button", { name: "Delete", exact: true }).click();
  assert.match(await page.getByTestId("devices-notice").textContent(), /Deleted 60 points of ui-doomed:temperature/);
  assert.equal(psql("SELECT count(*) FROM readings WHERE device_id = 'ui-doomed'"), "0");
  // The seeded series that was not deleted is untouched.
  assert.equal(psql("SELECT count(*) FROM readings WHERE device_id = 'ui-seeded'"), "60");
});

test("the devices page marks stale series", async () => {
  await page.goto(`${URL}/#/devices`);
  // The seeded series ended in March 2026: stale. The simulated sensors report every second.
  await page.locator('tr[data-series="ui-seeded:temperature"].stale').waitFor();
  assert.equal(await page.locator('tr[data-series="sensor_1:temperature"].stale').count(), 0);
  await screenshot("devices");
});

test("the cluster page lists the node", async () => {
  await page.goto(`${URL}/#/cluster`);
  const table = page.getByTestId("cluster-table");
  await table.waitFor();
  const text = await table.textContent();
  assert.match(text, /node1 \(this node\)/);
  assert.match(text, /active/);
  assert.match(text, /100\.0 %/);
  await page.getByTestId("ingest-rate").filter({ hasText: "points/s" }).waitFor({ timeout: 10_000 });
  await screenshot("cluster");
});

test("no page logged an error", () => {
  // Aborted requests log a network error; everything else would be a bug.
  const unexpected = consoleErrors.filter((e) => !/net::ERR_CONNECTION_REFUSED|Failed to load resource|Failed to fetch/.test(e));
  assert.deepEqual(unexpected, []);
});
