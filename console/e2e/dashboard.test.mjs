// The analytics dashboard in a real headless Chromium (Debian's `chromium`, driven by
// playwright-core). Run by `tests/api/console.rs`, which starts the server, ingests the
// console's scenarios and waits for the dashboard's first pass, then passes:
//
//   CONSOLE_URL          http://127.0.0.1:<port> of a running idgraph server (required)
//   CONSOLE_ANALYST_KEY  an analyst's key (may read GET /v1/stats)
//   CONSOLE_AGENT_KEY    an agent's key (may not)
//
// The charts must render (pixels drawn) with exactly the numbers `GET /v1/stats` gives.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { env as required, launch, withPage as openPage, apiGet as get } from './browser.mjs';

const SCREENSHOT = '/tmp/console-dashboard-e2e.png';
const env = (name) => required(name, import.meta.url);

const BASE = env('CONSOLE_URL').replace(/\/$/, '');
const ANALYST = env('CONSOLE_ANALYST_KEY');
const AGENT = env('CONSOLE_AGENT_KEY');

let browser;

before(async () => {
  browser = await launch();
});

after(async () => {
  if (browser) await browser.close();
});

/** The labels and datasets of the Chart.js chart on canvas `testid`, and whether it drew. */
async function chartOf(page, testid) {
  const canvas = page.getByTestId(testid);
  await canvas.waitFor();
  return page.evaluate((id) => {
    const el = document.querySelector(`[data-testid="${id}"]`);
    const chart = Chart.getChart(el);
    const pixels = el.getContext('2d').getImageData(0, 0, el.width, el.height).data;
    let drawn = 0;
    for (let i = 3; i < pixels.length; i += 4) if (pixels[i] !== 0) drawn++;
    return {
      labels: chart.data.labels.map(String),
      datasets: chart.data.datasets.map((d) => ({ label: d.label, data: Array.from(d.data) })),
      drawn,
    };
  }, testid);
}

test('the charts show exactly what GET /v1/stats answers', { timeout: 180_000 }, async () => {
  const s = await get(BASE, ANALYST, '/v1/stats');
  assert.ok(s.snapshot, 'the first pass is done before the browser starts');
  assert.ok(s.match_scores, 'matching is on in the scenario');
  await openPage(browser, { key: ANALYST, screenshot: SCREENSHOT }, async (page) => {
    await page.goto(`${BASE}/#/`);
    // The nav offers the dashboard to an analyst.
    await page.getByTestId('nav-dashboard').click();
    await page.waitForURL(/#\/dashboard$/);
    assert.match(await page.getByTestId('dashboard-meta').textContent(), new RegExp(`${s.snapshot.profiles} profiles`));

    const daily = await chartOf(page, 'chart-daily');
    assert.deepEqual(daily.labels, s.daily.map((d) => d.day));
    const series = Object.fromEntries(daily.datasets.map((d) => [d.label, d.data]));
    assert.deepEqual(series['Merges'], s.daily.map((d) => d.merges));
    assert.deepEqual(series['Splits'], s.daily.map((d) => d.splits));
    assert.deepEqual(series['Profiles created'], s.daily.map((d) => d.created));
    assert.deepEqual(series['Conflicts (refused merges)'], s.daily.map((d) => d.conflicts));
    assert.ok(daily.drawn > 0, 'the daily chart drew');

    const totals = await chartOf(page, 'chart-totals');
    const withTotals = s.daily.filter((d) => d.profiles !== null);
    assert.deepEqual(totals.datasets[0].data, withTotals.map((d) => d.profiles));
    assert.deepEqual(totals.datasets[1].data, withTotals.map((d) => d.identifiers));

    const per = await chartOf(page, 'chart-per-profile');
    assert.deepEqual(per.labels, s.snapshot.identifiers_per_profile.map((b) => b.label));
    assert.deepEqual(per.datasets[0].data, s.snapshot.identifiers_per_profile.map((b) => b.count));
    assert.ok(per.drawn > 0);

    const hh = await chartOf(page, 'chart-households');
    assert.deepEqual(hh.datasets[0].data, s.snapshot.household_sizes.map((b) => b.count));

    const scores = await chartOf(page, 'chart-scores');
    assert.deepEqual(scores.datasets[0].data, s.match_scores.buckets.map((b) => b.count));
    assert.ok(scores.drawn > 0);

    // Source overlap: every cell as answered.
    const o = s.snapshot.source_overlap;
    for (const [i, a] of o.sources.entries()) {
      for (const [j, b] of o.sources.entries()) {
        const cell = page.locator(`[data-testid="source-overlap"] td[data-a="${a}"][data-b="${b}"]`);
        assert.equal(await cell.textContent(), String(o.matrix[i][j]), `${a} × ${b}`);
      }
    }
    // Largest profiles, in order, each a link to its profile.
    const rows = page.getByTestId('largest-row');
    assert.equal(await rows.count(), s.snapshot.largest.length);
    for (const [i, p] of s.snapshot.largest.entries()) {
      assert.equal(await rows.nth(i).getAttribute('data-profile-id'), p.profile_id);
    }
    await rows.nth(0).getByRole('link').click();
    await page.waitForURL(new RegExp(`#/profiles/${s.snapshot.largest[0].profile_id}$`));
  });
});

test('an agent is not offered the dashboard and is refused it', { timeout: 120_000 }, async () => {
  await openPage(browser, { key: AGENT, screenshot: SCREENSHOT }, async (page) => {
    await page.goto(`${BASE}/#/`);
    await page.waitForFunction(() => document.body.dataset.stats === 'no');
    assert.equal(await page.getByTestId('nav-dashboard').isVisible(), false);
    await page.goto(`${BASE}/#/dashboard`);
    await page.getByTestId('dashboard-error').waitFor();
    assert.equal(await page.locator('canvas').count(), 0);
  });
});
