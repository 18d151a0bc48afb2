// End-to-end tests of the web console in a real headless Chromium (Debian's `chromium`,
// driven by playwright-core). Run by `tests/api/console.rs`, which starts the server,
// ingests a scenario and passes what the tests need in the environment:
//
//   CONSOLE_URL         http://127.0.0.1:<port> of a running idgraph server (required)
//   CONSOLE_KEY         an API key the console uses (agent with unmask, or admin)
//   CONSOLE_QUERY       a misspelled name to type into the search box
//   CONSOLE_PROFILE_ID  the profile the search must find
//   CONSOLE_NAME        that person's golden name ("First Last")
//   CONSOLE_EXPLAIN_A, CONSOLE_EXPLAIN_B  two identifiers (kind:value) of that profile
//   CONSOLE_MARKUP      a trait value holding HTML that must be shown as text
//
// Manually: CONSOLE_URL=... CONSOLE_QUERY=... node --test console/e2e/console.test.mjs
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { env as required, launch, withPage as openPage, apiGet as get } from './browser.mjs';

const SCREENSHOT = '/tmp/console-e2e.png';
const env = (name) => required(name, import.meta.url);

const BASE = env('CONSOLE_URL').replace(/\/$/, '');
const KEY = env('CONSOLE_KEY');
const QUERY = env('CONSOLE_QUERY');
const PID = env('CONSOLE_PROFILE_ID');
const NAME = env('CONSOLE_NAME');
const EXPLAIN_A = env('CONSOLE_EXPLAIN_A');
const EXPLAIN_B = env('CONSOLE_EXPLAIN_B');
const MARKUP = process.env.CONSOLE_MARKUP || '';

let browser;

before(async () => {
  browser = await launch();
});

after(async () => {
  if (browser) await browser.close();
});

const apiGet = (path) => get(BASE, KEY, path);

/** Runs `body(page)` in a fresh page, with the key in its session unless `withKey` is false. */
const withPage = (body, withKey = true) => openPage(browser, { key: withKey ? KEY : null, screenshot: SCREENSHOT }, body);

test('search as you type with a misspelled name finds the person and opens the profile', { timeout: 180_000 }, async () => {
  await withPage(async (page) => {
    const searches = [];
    page.on('request', (r) => { if (new URL(r.url()).pathname === '/v1/search') searches.push(r.url()); });
    await page.goto(BASE + '/');
    const input = page.getByTestId('search-input');
    await input.click();
    await input.pressSequentially(QUERY, { delay: 30 });

    // Wait for the answer to the whole (misspelled) query, not an earlier prefix.
    const answered = page.locator(`[data-testid="search-summary"][data-query=${JSON.stringify(QUERY)}], [data-testid="search-error"]`);
    await answered.first().waitFor();
    const error = page.getByTestId('search-error');
    if (await error.count()) {
      assert.fail(`the search answered an error: ${await error.textContent()}`);
    }
    const hit = page.locator(`[data-testid="search-hit"][data-profile-id="${PID}"]`);
    assert.equal(await hit.count(), 1, `${PID} is among the hits for ${QUERY}: ${await page.getByTestId('search-results').textContent()}`);
    assert.equal(await hit.locator('[data-testid="hit-name"]').first().textContent(), NAME);
    assert.match(await hit.first().textContent(), /matched/, 'the hit shows the matched fields');
    // Results as you type, debounced: far fewer requests than keystrokes.
    assert.ok(searches.length >= 1 && searches.length < QUERY.length,
      `${searches.length} search requests for ${QUERY.length} keystrokes`);
    assert.ok(searches.some((u) => new URL(u).searchParams.get('q') === QUERY),
      `the whole query was searched: ${searches}`);
    assert.match(page.url(), /#\/search\?q=/);

    await hit.locator('a').first().click();
    await page.locator(`[data-testid="golden-profile"][data-profile-id="${PID}"]`).waitFor();
    assert.equal(await page.getByTestId('profile-name').textContent(), NAME);
    assert.ok(page.url().endsWith(`#/profiles/${PID}`), page.url());
    await page.locator('[data-testid="graph-canvas"][data-ready="true"]').waitFor();
  });
});

test('profile page: golden profile, identifiers, devices, household, history', { timeout: 180_000 }, async () => {
  const profile = await apiGet(`/v1/profiles/${PID}`);
  const household = await apiGet(`/v1/profiles/${PID}/household`);
  const devices = await apiGet(`/v1/profiles/${PID}/devices`);
  await withPage(async (page) => {
    await page.goto(`${BASE}/#/profiles/${PID}`);
    const golden = page.getByTestId('golden-profile');
    await golden.waitFor();
    assert.equal(await page.getByTestId('profile-name').textContent(), NAME);
    const goldenText = await golden.textContent();
    for (const s of profile.sources) assert.ok(goldenText.includes(s), `source ${s} shown`);
    for (const m of profile.merged_ids) assert.ok(goldenText.includes(m), `merged id ${m} shown`);
    assert.ok(goldenText.includes(profile.traits.birth_date), 'birth date shown');
    assert.ok(goldenText.includes(profile.traits.address.city), 'city shown');
    if (MARKUP) {
      assert.ok(goldenText.includes(MARKUP), 'markup in a trait is shown as text');
      assert.equal(await golden.locator('img, script').count(), 0, 'no markup from data is interpreted');
    }

    // Identifiers by kind, each with its sources and first/last seen from the graph nodes.
    await page.locator('[data-testid="identifier-row"] .chip.source').first().waitFor();
    const rows = page.getByTestId('identifier-row');
    const expected = Object.entries(profile.identifiers).flatMap(([k, vs]) => vs.map((v) => `${k}:${v}`));
    assert.equal(await rows.count(), expected.length);
    const graph = await apiGet(`/v1/profiles/${PID}/graph`);
    for (const key of expected) {
      const node = graph.elements.nodes.find((n) => n.data.id === key).data;
      const row = page.locator(`[data-testid="identifier-row"][data-key="${key}"]`);
      const text = await row.textContent();
      for (const s of node.sources) assert.ok(text.includes(s), `${key}: source ${s} in ${text}`);
      assert.ok(text.includes(node.first_seen.slice(0, 10)), `${key}: first seen in ${text}`);
    }

    // Devices, with the shared one naming the other profile.
    await page.getByTestId('device-row').first().waitFor();
    assert.equal(await page.getByTestId('device-row').count(), devices.devices.length);
    const shared = devices.devices.flatMap((d) => d.shared_with);
    assert.ok(shared.length > 0, 'the scenario has a shared device');
    const devicesText = await page.getByTestId('devices').textContent();
    for (const other of shared) assert.ok(devicesText.includes(other), `shared with ${other}`);

    // Household members (linked) and bonds.
    await page.getByTestId('household-member').first().waitFor();
    assert.equal(await page.getByTestId('household-member').count(), household.members.length);
    assert.equal(await page.getByTestId('household-bond').count(), household.bonds.length);
    for (const m of household.members.filter((m) => m !== PID)) {
      assert.equal(await page.locator(`[data-testid="household-member"][data-profile-id="${m}"] a`).count(), 1);
    }

    // Merge history.
    await page.getByTestId('history-entry').first().waitFor();
    const history = await apiGet(`/v1/profiles/${PID}/history`);
    assert.equal(await page.getByTestId('history-entry').count(), history.history.length);
    assert.match(await page.getByTestId('history').textContent(), /merged into/);
  });
});

test('identity graph: drawn like the API says, edge provenance on click, explain between two identifiers', { timeout: 180_000 }, async () => {
  const graph = await apiGet(`/v1/profiles/${PID}/graph`);
  const apiNodes = graph.elements.nodes.length;
  const apiEdges = graph.elements.edges.map((e) => e.data);
  assert.ok(apiNodes >= 5 && apiEdges.length >= 4, `the scenario's graph is not trivial: ${apiNodes} nodes`);
  await withPage(async (page) => {
    await page.goto(`${BASE}/#/profiles/${PID}`);
    const canvasBox = page.locator('[data-testid="graph-canvas"][data-ready="true"]');
    await canvasBox.waitFor();

    // Node and edge counts: Cytoscape and the DOM agree with the API.
    const drawn = await page.evaluate(() => ({
      nodes: window.idgraphConsole.cy.nodes().length,
      edges: window.idgraphConsole.cy.edges().length,
      refusedDashed: window.idgraphConsole.cy.edges('[status = "refused"]').map((e) => e.style('line-style')),
    }));
    assert.equal(drawn.nodes, apiNodes, 'cy.nodes() matches the API');
    assert.equal(drawn.edges, apiEdges.length, 'cy.edges() matches the API');
    const counts = page.getByTestId('graph-counts');
    assert.equal(await counts.getAttribute('data-nodes'), String(apiNodes));
    assert.equal(await counts.getAttribute('data-edges'), String(apiEdges.length));
    assert.match(await counts.textContent(), new RegExp(`^${apiNodes} identifiers · ${apiEdges.length} links`));
    const refused = apiEdges.filter((e) => e.status === 'refused');
    assert.ok(refused.length > 0, 'the scenario has a refused link');
    assert.deepEqual(drawn.refusedDashed, refused.map(() => 'dashed'), 'refused links are dashed');

    // Click an edge (with several sources) where it is drawn, read its provenance.
    await canvasBox.scrollIntoViewIfNeeded();
    const candidates = apiEdges.filter((e) => e.sources.length >= 2).map((e) => e.id);
    assert.ok(candidates.length > 0, 'the scenario has a link seen in several sources');
    const target = await page.evaluate((ids) => {
      const cy = window.idgraphConsole.cy;
      const clearance = (edge) => {
        const m = edge.renderedMidpoint();
        let best = Infinity;
        cy.nodes().forEach((n) => {
          const p = n.renderedPosition();
          best = Math.min(best, Math.hypot(p.x - m.x, p.y - m.y) - n.renderedOuterWidth() / 2);
        });
        cy.edges().forEach((o) => {
          if (o.id() === edge.id()) return;
          const q = o.renderedMidpoint();
          best = Math.min(best, Math.hypot(q.x - m.x, q.y - m.y));
        });
        return best;
      };
      const edge = ids.map((id) => cy.getElementById(id)).sort((a, b) => clearance(b) - clearance(a))[0];
      return { id: edge.id(), ...edge.renderedMidpoint() };
    }, candidates);
    const canvas = await page.locator('[data-testid="graph-canvas"] canvas').first().boundingBox();
    await page.mouse.click(canvas.x + target.x, canvas.y + target.y);
    const panel = page.getByTestId('edge-panel');
    await panel.waitFor();
    assert.equal(await panel.getAttribute('data-edge-id'), target.id, 'the clicked link is the one shown');
    const edge = apiEdges.find((e) => e.id === target.id);
    const sourcesText = await panel.getByTestId('prov-sources').textContent();
    for (const s of edge.sources) assert.ok(sourcesText.includes(s), `provenance names source ${s}: ${sourcesText}`);
    const count = panel.getByTestId('prov-count');
    assert.equal(await count.getAttribute('data-count'), String(edge.count));
    assert.equal(await count.textContent(), `${edge.count} ${edge.count === 1 ? 'event' : 'events'}`);
    const eventsText = await panel.getByTestId('prov-events').textContent();
    for (const id of edge.event_ids) assert.ok(eventsText.includes(id), `event ${id} listed`);
    assert.equal(await panel.getByTestId('prov-status').textContent(), edge.status);

    // Click two identifiers: the explain path is listed and highlighted.
    const clickNode = async (key) => {
      const p = await page.evaluate((k) => window.idgraphConsole.cy.getElementById(k).renderedPosition(), key);
      await page.mouse.click(canvas.x + p.x, canvas.y + p.y);
    };
    await clickNode(EXPLAIN_A);
    const selection = page.getByTestId('explain-selection');
    assert.equal(await selection.getAttribute('data-a'), EXPLAIN_A, 'first click selects A');
    assert.match(await page.getByTestId('selected-a').textContent(), new RegExp(EXPLAIN_A.split(':')[1].replace(/[.*+?^${}()|[\]\\]/g, '\\$&')));
    await clickNode(EXPLAIN_B);
    assert.equal(await selection.getAttribute('data-b'), EXPLAIN_B, 'second click selects B');
    const q = new URLSearchParams({ a: EXPLAIN_A, b: EXPLAIN_B });
    const explain = await apiGet(`/v1/profiles/${PID}/explain?${q}`);
    assert.ok(explain.connected && explain.hops >= 2, `a path of several links: ${JSON.stringify(explain)}`);
    const result = page.getByTestId('explain-result');
    await result.waitFor();
    assert.equal(await result.getAttribute('data-hops'), String(explain.hops));
    const steps = page.getByTestId('explain-step');
    assert.deepEqual(await steps.evaluateAll((els) => els.map((e) => e.dataset.edgeId)), explain.edges.map((e) => e.id));
    for (let i = 0; i < explain.edges.length; i++) {
      const text = await steps.nth(i).textContent();
      for (const s of explain.edges[i].sources) assert.ok(text.includes(s), `step ${i + 1} names source ${s}`);
      assert.ok(text.includes(`${explain.edges[i].count} event`), `step ${i + 1} shows its count`);
    }
    const highlighted = await page.evaluate(() => window.idgraphConsole.cy.$('.on-path').map((e) => e.id()).sort());
    assert.deepEqual(highlighted, [...explain.path, ...explain.edges.map((e) => e.id)].sort(), 'the path is highlighted');
  });
});

test('without a key the console asks for one on load, before any search', { timeout: 120_000 }, async () => {
  await withPage(async (page) => {
    await page.goto(`${BASE}/`);
    await page.getByTestId('key-form').waitFor();
    assert.ok(await page.getByTestId('key-input').isVisible(), 'the key field is shown at once');
    assert.equal(await page.getByTestId('search-results').count(), 0, 'no search view before a key');
    await page.getByTestId('key-input').fill(KEY);
    await page.getByTestId('key-submit').click();
    await page.getByTestId('key-form').waitFor({ state: 'detached' });
  }, false);
});

test('without a key the console asks for one, then works with it', { timeout: 120_000 }, async () => {
  await withPage(async (page) => {
    await page.goto(`${BASE}/#/profiles/${PID}`);
    await page.getByTestId('key-form').waitFor();
    await page.getByTestId('key-input').fill(KEY);
    await page.getByTestId('key-submit').click();
    await page.getByTestId('profile-name').waitFor();
    assert.equal((await page.getByTestId('profile-name').textContent()).trim(), NAME);
  }, false);
});
