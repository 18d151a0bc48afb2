// Shared by the console's browser tests: the environment, Debian's headless Chromium
// (driven by playwright-core) and a page per test that fails on uncaught page errors and
// saves a screenshot when a test fails.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { chromium } from 'playwright-core';

const CHROMIUM = '/usr/bin/chromium';

/** Environment variable `name`, which the test needs. */
export function env(name, from) {
  const v = process.env[name];
  if (!v) throw new Error(`environment variable ${name} is required (see the header of ${from})`);
  return v;
}

/** Starts Chromium, or fails clearly when it is missing (never skips). */
export async function launch() {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`${CHROMIUM} is missing: install Debian's chromium (scripts/install-deps.sh does)`);
  }
  return chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
}

/**
 * Runs `body(page)` in a fresh page of `browser` whose session holds API key `key` (none
 * when null); on failure saves a screenshot to `screenshot` and adds the page's console
 * errors to the message. Uncaught page errors fail the test.
 */
export async function withPage(browser, { key, screenshot }, body) {
  const context = await browser.newContext({ viewport: { width: 1440, height: 1000 } });
  if (key) {
    await context.addInitScript((k) => sessionStorage.setItem('idgraph-api-key', k), key);
  }
  const page = await context.newPage();
  page.setDefaultTimeout(30000); // generous: the whole cargo test suite runs alongside
  const pageErrors = [];
  const consoleErrors = [];
  page.on('pageerror', (e) => pageErrors.push(String(e)));
  page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(m.text()); });
  try {
    await body(page);
    assert.deepEqual(pageErrors, [], 'uncaught errors in the page');
  } catch (e) {
    await page.screenshot({ path: screenshot, fullPage: true }).catch(() => {});
    e.message += `\n(screenshot: ${screenshot}; page URL: ${page.url()}; page errors: ${JSON.stringify(pageErrors)}; console errors: ${JSON.stringify(consoleErrors)})`;
    throw e;
  } finally {
    await context.close();
  }
}

/** GET `path` from the server with `key`; asserts a 200 and answers the JSON. */
export async function apiGet(base, key, path) {
  const resp = await fetch(base + path, { headers: { authorization: `Bearer ${key}` } });
  const body = await resp.text();
  assert.equal(resp.status, 200, `GET ${path} answered ${resp.status}: ${body}`);
  return JSON.parse(body);
}

/** Clicks graph node `key` (an identifier, `kind:value`) where Cytoscape drew it. */
export async function clickNode(page, key) {
  const canvas = page.locator('[data-testid="graph-canvas"][data-ready="true"]');
  await canvas.scrollIntoViewIfNeeded();
  const box = await page.locator('[data-testid="graph-canvas"] canvas').first().boundingBox();
  const p = await page.evaluate((k) => {
    const n = window.idgraphConsole.cy.getElementById(k);
    return n.empty() ? null : n.renderedPosition();
  }, key);
  assert.ok(p, `${key} is drawn in the graph`);
  await page.mouse.click(box.x + p.x, box.y + p.y);
}
