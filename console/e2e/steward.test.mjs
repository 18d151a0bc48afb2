// End-to-end tests of the console's steward (admin) features in a real headless Chromium:
// the review queue, merge and split on the profile page, why-not, value history and pins;
// and that an agent's key sees none of them. Run by `tests/api/console.rs`, which starts a
// server with probabilistic matching on, ingests the scenario below, passes what the tests
// need in the environment, and afterwards checks over HTTP that the writes happened:
//
//   CONSOLE_URL          http://127.0.0.1:<port> of a running idgraph server
//   CONSOLE_ADMIN_KEY    an admin key (the steward)
//   CONSOLE_AGENT_KEY    an agent key (must see no steward controls)
//   CONSOLE_PROFILE_ID   the profile of CONSOLE_PHONE_A at the start (it survives the accept)
//   CONSOLE_PHONE_A, CONSOLE_PHONE_B  two identifiers (kind:value) of one person in two
//                        profiles, queued for review (same names and birth date, other city)
//   CONSOLE_EMAIL        an identifier an event linked to CONSOLE_PHONE_B (splitting it out
//                        cuts a link an event made: rule_conflict, then an override)
//   CONSOLE_MERGE_ID     another profile (a device) to merge by hand
//   CONSOLE_OTHER_A, CONSOLE_OTHER_B  the pair of a second review item, to reject
//   CONSOLE_CONFLICT_A, CONSOLE_CONFLICT_B  the pair of a third, whose accept breaks a
//                        rule (two customer ids): rule_conflict, then an override
//   CONSOLE_MARKUP       a trait value holding HTML that must be shown as text
//   CONSOLE_REASON_ACCEPT, _REJECT, _OVERRIDE, _MERGE, _SPLIT, _PIN, _UNPIN  the reasons to type
//
// The tests run in order, each on the state the previous one left.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { env as required, launch, withPage, apiGet, clickNode } from './browser.mjs';

const SCREENSHOT = '/tmp/console-steward-e2e.png';
const env = (name) => required(name, import.meta.url);

const BASE = env('CONSOLE_URL').replace(/\/$/, '');
const ADMIN = env('CONSOLE_ADMIN_KEY');
const AGENT = env('CONSOLE_AGENT_KEY');
const PID = env('CONSOLE_PROFILE_ID');
const PHONE_A = env('CONSOLE_PHONE_A');
const PHONE_B = env('CONSOLE_PHONE_B');
const EMAIL = env('CONSOLE_EMAIL');
const MERGE_ID = env('CONSOLE_MERGE_ID');
const MARKUP = env('CONSOLE_MARKUP');
const OTHER_A = env('CONSOLE_OTHER_A');
const OTHER_B = env('CONSOLE_OTHER_B');
const CONFLICT_A = env('CONSOLE_CONFLICT_A');
const CONFLICT_B = env('CONSOLE_CONFLICT_B');
const REASON = {
  accept: env('CONSOLE_REASON_ACCEPT'),
  reject: env('CONSOLE_REASON_REJECT'),
  override: env('CONSOLE_REASON_OVERRIDE'),
  merge: env('CONSOLE_REASON_MERGE'),
  split: env('CONSOLE_REASON_SPLIT'),
  pin: env('CONSOLE_REASON_PIN'),
  unpin: env('CONSOLE_REASON_UNPIN'),
};

let browser;

before(async () => {
  browser = await launch();
});

after(async () => {
  if (browser) await browser.close();
});

const admin = (body) => withPage(browser, { key: ADMIN, screenshot: SCREENSHOT }, body);
const agent = (body) => withPage(browser, { key: AGENT, screenshot: SCREENSHOT }, body);
const get = (path) => apiGet(BASE, ADMIN, path);
const weightText = (w) => (w > 0 ? '+' : '') + w.toFixed(2);
const asText = (v) => (typeof v === 'string' ? v : JSON.stringify(v));
const row = (page, key) => page.locator(`[data-testid="identifier-row"][data-key="${key}"]`);

/** The profile identifier `key` (`kind:value`) is in now, as the API says. */
async function profileOf(key) {
  const i = key.indexOf(':');
  const found = await get(`/v1/lookup?${new URLSearchParams({ kind: key.slice(0, i), value: key.slice(i + 1) })}`);
  return found.profile_id;
}

/** The profile page of `pid` with the steward's controls and the graph ready. */
async function openProfile(page, pid) {
  await page.goto(`${BASE}/#/profiles/${pid}`);
  await page.locator(`[data-testid="golden-profile"][data-profile-id="${pid}"]`).waitFor();
  await page.getByTestId('steward-actions').waitFor();
  await page.locator('[data-testid="graph-canvas"][data-ready="true"]').waitFor();
  await page.getByTestId('split-pick').first().waitFor();
}

/** Fills the reason of the open action form `testid` and confirms it. */
async function confirm(page, testid, reason) {
  const form = page.getByTestId(testid);
  await form.getByTestId('reason-input').fill(reason);
  await form.getByTestId('action-confirm').click();
}

test('review queue: pages, the pair side by side with its evidence, reject and accept with a reason', { timeout: 180_000 }, async () => {
  const queue = await get('/v1/review');
  assert.equal(queue.items.length, 3, `three items queued: ${JSON.stringify(queue)}`);
  const [item, other, third] = queue.items; // oldest first: Anna's, Piotr's, Brian's
  assert.deepEqual([other.a.identifier, other.b.identifier].sort(), [OTHER_A, OTHER_B].sort());
  assert.deepEqual([third.a.identifier, third.b.identifier].sort(), [CONFLICT_A, CONFLICT_B].sort());
  await admin(async (page) => {
    await page.goto(BASE + '/');
    await page.locator('body[data-steward="yes"]').waitFor();
    const nav = page.getByTestId('nav-review');
    assert.ok(await nav.isVisible(), 'an admin sees the review queue link');
    await nav.click();
    await page.locator(`[data-testid="review-item"][data-seq="${other.seq}"]`).waitFor();
    assert.equal(await page.getByTestId('review-item').count(), 3);

    const posts = [];
    page.on('request', (r) => { if (r.method() === 'POST') posts.push({ url: r.url(), body: r.postDataJSON() }); });

    // One item a page: Piotr's is on the next page. Reject it, with a reason.
    await page.goto(`${BASE}/#/review?limit=1`);
    await page.locator(`[data-testid="review-item"][data-seq="${item.seq}"]`).waitFor();
    assert.equal(await page.getByTestId('review-item').count(), 1);
    await page.getByTestId('review-next').click();
    const second = page.locator(`[data-testid="review-item"][data-seq="${other.seq}"]`);
    await second.waitFor();
    assert.equal(await page.getByTestId('review-item').count(), 1);
    assert.ok(new URL(page.url()).hash.includes(`after=${item.seq}`), page.url());
    await second.getByTestId('review-reject').click();
    await confirm(page, 'review-form', REASON.reject);
    await second.locator('[data-testid="review-result"][data-decision="reject"]').waitFor();
    assert.equal(await second.getAttribute('data-status'), 'rejected');
    assert.deepEqual(posts.map((p) => [new URL(p.url).pathname, p.body]),
      [[`/v1/review/${other.seq}`, { decision: 'reject', reason: REASON.reject }]]);
    // Why not, from the item: refused by the steward's rejection.
    await second.getByRole('link', { name: 'Why not?' }).click();
    const refused = page.locator('[data-testid="whynot-result"][data-verdict="refused"]');
    await refused.waitFor();
    assert.ok((await refused.getByTestId('refused-rule').allTextContents()).includes('steward_rejected'));

    // Brian's, on the third page: two customer ids, so accepting breaks a rule. The
    // message is shown with the rule prefilled, and confirming again overrides it.
    await page.goto(`${BASE}/#/review?limit=1&after=${other.seq}`);
    const conflicted = page.locator(`[data-testid="review-item"][data-seq="${third.seq}"]`);
    await conflicted.waitFor();
    posts.length = 0;
    await conflicted.getByTestId('review-accept').click();
    await confirm(page, 'review-form', REASON.override);
    await conflicted.getByTestId('rule-conflict').waitFor();
    assert.match(await conflicted.getByTestId('conflict-error').textContent(), /rule_conflict.*probable_conflict:customer_id/s);
    assert.equal(await conflicted.getByTestId('override-input').inputValue(), 'probable_conflict:customer_id');
    assert.equal(await conflicted.getAttribute('data-status'), 'open', 'nothing decided yet');
    await conflicted.getByTestId('action-confirm').click();
    const forced = conflicted.locator('[data-testid="review-result"][data-decision="accept"]');
    await forced.waitFor();
    assert.match(await forced.textContent(), /Overridden: probable_conflict:customer_id/);
    assert.deepEqual(posts.map((p) => p.body), [
      { decision: 'accept', reason: REASON.override },
      { decision: 'accept', reason: REASON.override, override: ['probable_conflict:customer_id'] },
    ]);

    // Anna's item, on the first page: the two records side by side with each field's weight.
    await page.goto(`${BASE}/#/review?limit=1`);
    const card = page.locator(`[data-testid="review-item"][data-seq="${item.seq}"]`);
    await card.waitFor();
    assert.equal(await card.getAttribute('data-status'), 'open');
    assert.equal(await card.getByTestId('review-score').textContent(), `score ${item.score.toFixed(3)}`);
    // A is the record that arrived (Denver), B the candidate (Boston).
    assert.match(await card.getByTestId('review-side-a').textContent(), new RegExp(escape(item.a.identifier.split(':')[1])));
    assert.match(await card.getByTestId('review-side-b').textContent(), new RegExp(escape(item.b.identifier.split(':')[1])));
    const rows = card.getByTestId('evidence-row');
    assert.deepEqual(await rows.evaluateAll((els) => els.map((e) => e.dataset.field)), item.fields.map((f) => f.field));
    assert.deepEqual(await card.getByTestId('evidence-weight').allTextContents(), item.fields.map((f) => weightText(f.weight)),
      'each field shows its weight');
    const city = card.locator('[data-testid="evidence-row"][data-field="city"] td');
    assert.equal(await city.nth(0).textContent(), item.a.profile.traits.address.city);
    assert.equal(await city.nth(1).textContent(), item.b.profile.traits.address.city);
    assert.notEqual(item.a.profile.traits.address.city, item.b.profile.traits.address.city);

    // Accept asks for a reason: none, nothing is sent.
    posts.length = 0;
    await card.getByTestId('review-accept').click();
    const form = card.getByTestId('review-form');
    await form.getByTestId('action-confirm').click();
    await form.getByTestId('action-error').waitFor();
    assert.equal(posts.length, 0, 'no decision without a reason');
    await confirm(page, 'review-form', REASON.accept);
    const result = card.locator('[data-testid="review-result"][data-decision="accept"]');
    await result.waitFor();
    assert.deepEqual(posts.map((p) => [new URL(p.url).pathname, p.body]),
      [[`/v1/review/${item.seq}`, { decision: 'accept', reason: REASON.accept }]]);
    assert.equal(await card.getAttribute('data-status'), 'accepted');
    assert.equal(await card.getByTestId('review-accept').isDisabled(), true);

    // The merged profile holds both phones.
    await result.locator('a').click();
    await page.locator(`[data-testid="golden-profile"][data-profile-id="${PID}"]`).waitFor();
    await row(page, PHONE_A).waitFor();
    assert.equal(await row(page, PHONE_B).count(), 1, 'both phones in one profile');
    // Decided items leave the queue.
    await page.getByTestId('nav-review').click();
    await page.getByTestId('review-empty').waitFor();
  });
});

test('split: identifiers picked in the graph move out; a cut event link needs an override', { timeout: 180_000 }, async () => {
  await admin(async (page) => {
    await openProfile(page, PID);
    await page.getByTestId('steward-split').click();
    await page.getByTestId('split-panel').waitFor();
    // Picked by clicking its node in the graph: its checkbox follows.
    await clickNode(page, EMAIL);
    const box = page.locator(`[data-testid="split-pick"][data-key="${EMAIL}"]`);
    assert.equal(await box.isChecked(), true, 'a click in the graph picks the identifier');
    assert.equal(await page.getByTestId('split-selection').getAttribute('data-count'), '1');
    assert.deepEqual(await page.evaluate(() => window.idgraphConsole.cy.$('.split-pick').map((n) => n.id())), [EMAIL]);
    // A checkbox picks too, and unpicks.
    const other = page.locator(`[data-testid="split-pick"][data-key="${PHONE_A}"]`);
    await other.check();
    assert.equal(await page.getByTestId('split-selection').getAttribute('data-count'), '2');
    await other.uncheck();
    assert.equal(await page.getByTestId('split-selection').getAttribute('data-count'), '1');

    const posts = [];
    page.on('request', (r) => { if (r.method() === 'POST') posts.push(r.postDataJSON()); });
    await page.getByTestId('split-selected').click();
    await confirm(page, 'split-form', REASON.split);
    const conflict = page.getByTestId('rule-conflict');
    await conflict.waitFor();
    assert.match(await conflict.textContent(), /rule_conflict.*shared_identifier/s);
    assert.equal(await page.getByTestId('override-input').inputValue(), 'shared_identifier', 'the rule is prefilled');
    assert.equal(await page.getByTestId('split-form').getAttribute('data-state'), 'conflict');
    await page.getByTestId('split-form').getByTestId('action-confirm').click();
    const result = page.locator(`[data-testid="steward-result"][data-kind="split"][data-profile-id="${PID}"]`);
    await result.waitFor();
    assert.deepEqual(posts, [
      { groups: [[EMAIL]], reason: REASON.split },
      { groups: [[EMAIL]], reason: REASON.split, override: ['shared_identifier'] },
    ]);
    assert.match(await result.textContent(), /2 profiles: .* · 1 link cut · 0 links added/);
    assert.match(await result.textContent(), /shared_identifier/, 'the override is shown');
    // The page shows the profile that kept the id; the answer links both parts.
    const links = await result.locator('a').evaluateAll((els) => els.map((a) => a.textContent));
    const [emailPid, phonesPid] = [await profileOf(EMAIL), await profileOf(PHONE_A)];
    assert.notEqual(emailPid, phonesPid, 'the email left the phones');
    assert.deepEqual([...links].sort(), [emailPid, phonesPid].sort());
    await page.locator(`[data-testid="golden-profile"][data-profile-id="${PID}"]`).waitFor();
    await result.locator('a', { hasText: phonesPid }).click();
    await page.locator(`[data-testid="golden-profile"][data-profile-id="${phonesPid}"]`).waitFor();
    await row(page, PHONE_B).waitFor();
    assert.equal(await row(page, PHONE_A).count(), 1);
    assert.equal(await row(page, EMAIL).count(), 0, 'the email left the profile');
  });

  // The new profile holds only the email: splitting it further has nothing to split, and
  // the console shows why.
  const moved = await profileOf(EMAIL);
  await admin(async (page) => {
    await openProfile(page, moved);
    await page.getByTestId('steward-split').click();
    await page.getByTestId('split-identifiers').click();
    assert.equal(await page.getByTestId('split-form').getAttribute('data-mode'), 'identifiers');
    await confirm(page, 'split-form', 'nothing to do');
    const error = page.getByTestId('split-form').getByTestId('action-error');
    await error.waitFor();
    assert.match(await error.textContent(), /nothing_to_split/);
    await page.getByTestId('split-components').click();
    assert.equal(await page.getByTestId('split-form').getAttribute('data-mode'), 'components');
  });
});

test('merge with another profile picked from a search: the answer is shown on the surviving profile', { timeout: 180_000 }, async () => {
  const device = await get(`/v1/profiles/${MERGE_ID}`);
  const deviceKeys = Object.entries(device.identifiers).flatMap(([k, vs]) => vs.map((v) => `${k}:${v}`));
  const phones = await profileOf(PHONE_A);
  await admin(async (page) => {
    await openProfile(page, phones);
    await page.getByTestId('steward-merge').click();
    // Confirming without naming the other profile is refused before any request.
    await confirm(page, 'merge-form', REASON.merge);
    await page.getByTestId('merge-form').getByTestId('action-error').waitFor();
    // Picked from a search for the tablet's id.
    await page.getByTestId('merge-search').fill(deviceKeys[0].slice(deviceKeys[0].indexOf(':') + 1));
    await page.locator(`[data-testid="merge-hit"][data-profile-id="${MERGE_ID}"] button`).click();
    assert.equal(await page.getByTestId('merge-target').inputValue(), MERGE_ID);
    await page.getByTestId('merge-form').getByTestId('action-confirm').click();
    const result = page.locator('[data-testid="steward-result"][data-kind="merge"]');
    await result.waitFor();
    // The oldest profile survives; the page shows it with the answer.
    const survivor = await profileOf(PHONE_A);
    assert.equal(await result.getAttribute('data-profile-id'), survivor);
    assert.equal(survivor, await profileOf(deviceKeys[0]), 'the tablet joined the phones');
    const absorbed = survivor === phones ? MERGE_ID : phones;
    assert.ok((await result.textContent()).includes(absorbed), 'the answer names the absorbed profile');
    assert.equal(await result.getByTestId('undo-group').count(), 1, 'and how to undo it');
    assert.ok(page.url().endsWith(`#/profiles/${survivor}`), page.url());
    await page.locator(`[data-testid="golden-profile"][data-profile-id="${survivor}"]`).waitFor();
    for (const key of [...deviceKeys, PHONE_A, PHONE_B]) await row(page, key).waitFor();
  });
});

test('why not: the verdict between two identifiers, as the API gives it', { timeout: 180_000 }, async () => {
  const apart = await get(`/v1/explain?${new URLSearchParams({ a: PHONE_A, b: EMAIL })}`);
  assert.equal(apart.verdict, 'refused', JSON.stringify(apart));
  await admin(async (page) => {
    await page.goto(BASE + '/');
    await page.locator('body[data-steward="yes"]').waitFor();
    await page.getByTestId('nav-why-not').click();
    await page.getByTestId('whynot-a').fill(PHONE_A);
    await page.getByTestId('whynot-b').fill(EMAIL);
    await page.getByTestId('whynot-submit').click();
    const result = page.locator('[data-testid="whynot-result"][data-verdict="refused"]');
    await result.waitFor();
    assert.equal(await result.getByTestId('whynot-verdict').textContent(), 'refused');
    assert.equal(await result.getByTestId('whynot-reason').textContent(), apart.reason);
    const rules = await result.getByTestId('refused-rule').allTextContents();
    assert.deepEqual(rules, apart.refused_links.map((l) => l.rule));
    assert.ok(rules.includes('steward_split'), `the split's refusal is listed: ${rules}`);

    // Two phones the steward joined: one person.
    await page.getByTestId('whynot-b').fill(PHONE_B);
    await page.getByTestId('whynot-submit').click();
    await page.locator('[data-testid="whynot-result"][data-verdict="same_profile"]').waitFor();
  });
});

test('value history: every value with its sources, the winner, pin and unpin', { timeout: 180_000 }, async () => {
  const phones = await profileOf(PHONE_A);
  const values = await get(`/v1/profiles/${phones}/values`);
  const address = values.traits.find((t) => t.name === 'address');
  assert.ok(address && address.values.length === 2, `two addresses: ${JSON.stringify(values)}`);
  const other = address.values.find((v) => !v.chosen);
  await admin(async (page) => {
    await openProfile(page, phones);
    const section = page.getByTestId('values');
    await section.getByTestId('trait-values').first().waitFor();
    assert.deepEqual(await section.getByTestId('trait-values').evaluateAll((els) => els.map((e) => e.dataset.trait)),
      values.traits.map((t) => t.name));
    for (const t of values.traits) {
      const block = section.locator(`[data-testid="trait-values"][data-trait="${t.name}"]`);
      const rows = block.getByTestId('value-row');
      assert.equal(await rows.count(), t.values.length, t.name);
      for (let i = 0; i < t.values.length; i++) {
        const v = t.values[i];
        const r = rows.nth(i);
        assert.equal(await r.getByTestId('value-text').textContent(), asText(v.value), `${t.name} value ${i}`);
        const text = await r.textContent();
        for (const s of v.sources) assert.ok(text.includes(s), `${t.name}: source ${s} in ${text}`);
        assert.ok(text.includes(v.first_seen.slice(0, 10)) && text.includes(String(v.count)), text);
        if (v.event_id) assert.ok(text.includes(v.event_id), `${t.name}: event ${v.event_id} in ${text}`);
        assert.equal(await r.getAttribute('data-chosen'), String(v.chosen));
      }
      if (t.winner && t.winner.event_id) {
        assert.equal(await block.getByTestId('winner-event').textContent(), t.winner.event_id, `${t.name}: the winning event`);
      }
    }
    const note = section.locator('[data-testid="trait-values"][data-trait="note"] [data-testid="value-text"]');
    assert.equal(await note.textContent(), MARKUP, 'markup in a value is shown as text');
    assert.equal(await page.locator('main img, main script').count(), 0, 'no markup from data is interpreted');

    // Pin the address survivorship did not choose: the golden profile shows it.
    const block = section.locator('[data-testid="trait-values"][data-trait="address"]');
    await block.locator('[data-testid="value-row"][data-chosen="false"]').getByTestId('value-pin').click();
    await confirm(page, 'pin-form', REASON.pin);
    await page.locator('[data-testid="trait-values"][data-trait="address"][data-chosen-by="pin"]').waitFor();
    const pinned = page.locator('[data-testid="trait-values"][data-trait="address"]');
    assert.match(await pinned.getByTestId('pin-note').textContent(), new RegExp(escape(REASON.pin)));
    assert.equal(await pinned.locator('[data-testid="value-row"][data-pinned="true"] [data-testid="value-text"]').textContent(), asText(other.value));
    await page.locator(`[data-testid="golden-profile"]:has-text(${JSON.stringify(other.value.city)})`).waitFor();

    // Unpin: survivorship decides again.
    await pinned.getByTestId('value-unpin').click();
    await confirm(page, 'unpin-form', REASON.unpin);
    await page.locator('[data-testid="trait-values"][data-trait="address"][data-chosen-by="survivorship"]').waitFor();
    assert.equal(await page.locator('[data-testid="trait-values"][data-trait="address"]').getByTestId('pin-note').count(), 0);
    assert.equal(await page.locator('[data-testid="trait-values"][data-trait="address"] [data-testid="trait-chosen"]').textContent(), asText(address.chosen));
  });
});

test('an agent sees no steward controls', { timeout: 120_000 }, async () => {
  const phones = await profileOf(PHONE_A);
  await agent(async (page) => {
    await page.goto(`${BASE}/#/profiles/${phones}`);
    await page.locator('body[data-steward="no"]').waitFor();
    await page.getByTestId('identifier-row').first().waitFor();
    await page.locator('[data-testid="graph-canvas"][data-ready="true"]').waitFor();
    assert.equal(await page.getByTestId('steward-nav').isVisible(), false, 'no steward links in the header');
    for (const id of ['steward-actions', 'split-pick', 'values', 'value-pin']) {
      assert.equal(await page.getByTestId(id).count(), 0, `no ${id} for an agent`);
    }
    // The agent's view stays masked: the phones are not shown in full.
    const shown = await page.getByTestId('identifiers-phone').textContent();
    assert.ok(!shown.includes(PHONE_A.split(':')[1]), `masked: ${shown}`);
    // The queue itself answers 403.
    await page.goto(`${BASE}/#/review`);
    const error = page.getByTestId('review-error');
    await error.waitFor();
    assert.match(await error.textContent(), /forbidden|403|not allowed/i);
  });
});

function escape(s) {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
