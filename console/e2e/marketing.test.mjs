// The profile page's consents, audiences and score, in a real headless Chromium (Debian's
// `chromium`, driven by playwright-core). Run by `tests/api/console.rs`, which starts the
// server, ingests a person with consent statements and a score trait and passes:
//
//   CONSOLE_URL         http://127.0.0.1:<port> of a running idgraph server (required)
//   CONSOLE_KEY         an agent's key (masked answers): the console shows what it is sent
//   CONSOLE_PROFILE_ID  the person's profile
//   CONSOLE_SCORE_MODEL the model named by the score trait
//
// Audiences are filled by no write path of this server yet: the audiences test adds them to
// the real profile answer in the browser (and takes consents and score away from it), to
// check that the console shows exactly what the API answered.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { env as required, launch, withPage as openPage, apiGet as get } from './browser.mjs';

const SCREENSHOT = '/tmp/console-marketing-e2e.png';
const env = (name) => required(name, import.meta.url);

const BASE = env('CONSOLE_URL').replace(/\/$/, '');
const KEY = env('CONSOLE_KEY');
const PID = env('CONSOLE_PROFILE_ID');
const MODEL = env('CONSOLE_SCORE_MODEL');

let browser;

before(async () => {
  browser = await launch();
});

after(async () => {
  if (browser) await browser.close();
});

const withPage = (body) => openPage(browser, { key: KEY, screenshot: SCREENSHOT }, body);

test('consents (purpose, state, source, date) and the score as the API gives them', { timeout: 180_000 }, async () => {
  const profile = await get(BASE, KEY, `/v1/profiles/${PID}`);
  const consents = Object.entries(profile.consents || {});
  assert.ok(consents.length >= 2, `the scenario states consents: ${JSON.stringify(profile)}`);
  const score = profile.traits.extra.score;
  assert.equal(score.model, MODEL);
  await withPage(async (page) => {
    await page.goto(`${BASE}/#/profiles/${PID}`);
    await page.getByTestId('golden-profile').waitFor();
    const panel = page.getByTestId('marketing');
    await panel.waitFor();

    const rows = page.getByTestId('consent-row');
    assert.equal(await rows.count(), consents.length);
    for (const [purpose, c] of consents) {
      const row = page.locator(`[data-testid="consent-row"][data-purpose="${purpose}"]`);
      assert.equal(await row.count(), 1, `a row for ${purpose}`);
      const text = await row.textContent();
      assert.ok(text.includes(purpose), text);
      assert.equal(await row.getByTestId('consent-state').textContent(), c.state);
      assert.ok(text.includes(c.source), `${purpose}: source ${c.source} in ${text}`);
      assert.ok(text.includes(c.at.slice(0, 10)), `${purpose}: date ${c.at} in ${text}`);
    }

    assert.equal(await page.getByTestId('score-value').textContent(), String(score.value));
    assert.equal(await page.getByTestId('score-model').textContent(), score.model);
    assert.equal(await page.getByTestId('score-label').textContent(), score.label);
    const scoreText = await page.getByTestId('profile-score').textContent();
    assert.ok(scoreText.includes(score.scored_at.slice(0, 10)), `scored date in ${scoreText}`);
    // The score has its own place, not a raw JSON line among the other traits.
    const golden = await page.getByTestId('golden-profile').textContent();
    assert.ok(!golden.includes('"scored_at"'), golden);
    assert.equal(await page.getByTestId('audiences').count(), 0);
    assert.match(await panel.textContent(), /Not in any audience/);
  });
});

test('audiences listed, and nothing the answer did not carry', { timeout: 180_000 }, async () => {
  await withPage(async (page) => {
    await page.route(`${BASE}/v1/profiles/${PID}`, async (route) => {
      const resp = await route.fetch();
      const body = await resp.json();
      body.audiences = ['aud_vip', 'aud_lapsed_buyers'];
      delete body.consents;
      if (body.traits && body.traits.extra) delete body.traits.extra.score;
      await route.fulfill({ response: resp, json: body });
    });
    await page.goto(`${BASE}/#/profiles/${PID}`);
    await page.getByTestId('marketing').waitFor();
    const chips = page.locator('[data-testid="audiences"] .chip');
    assert.deepEqual(await chips.allTextContents(), ['aud_vip', 'aud_lapsed_buyers']);
    assert.equal(await page.getByTestId('consent-row').count(), 0);
    assert.equal(await page.getByTestId('profile-score').count(), 0);
    const text = await page.getByTestId('marketing').textContent();
    assert.match(text, /No consent stated/);
    assert.match(text, /Not scored/);
  });
});
