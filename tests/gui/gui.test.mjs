// The GUI shell and the four service areas' plugins in real headless Chromium (Debian's
// /usr/bin/chromium, driven by playwright-core; no browser is ever downloaded), against a real
// demo (`hiscale demo` on SQLite in a temporary data directory and a free port):
//
//   sign up → log in → shop shows the home address that arrived through the feed → order →
//   billing shows the invoice the batch unit made → cancel → the invoice is void → log out;
//   a second user in another browser context (German) sees none of the first one's data;
//   one SA held stopped by the demo's supervisor: its plugin shows the error, the others work;
//   a plugin that throws, a plugin whose SA retired the version it needs, an expired session;
//   axe-core finds no serious or critical violation on any screen.
//
// Screenshots of every step go to target/gui-artifacts/ (gitignored). Run by scripts/test as
// `node --test --test-reporter=tap`; HISCALE_BIN names the binary (else the debug build).

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import { mkdtempSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';

const require = createRequire(import.meta.url);
const ROOT = path.resolve(import.meta.dirname, '..', '..');
const BINARY = process.env.HISCALE_BIN
  || path.join(process.env.CARGO_TARGET_DIR || path.join(ROOT, 'target'), 'debug', 'hiscale');
const CHROMIUM = process.env.HISCALE_CHROMIUM || '/usr/bin/chromium';
const ARTIFACTS = path.join(ROOT, 'target', 'gui-artifacts');
const AXE_SOURCE = readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');
/** From spawning the demo to its summary line: units healthy, sample loaded, copies caught up. */
const DEMO_START_MS = 90_000;
/** For a copy (shop's, billing's) or the batch unit to catch up; the feed is a long poll. */
const CATCH_UP_MS = 30_000;
const STEP_MS = 15_000;
const PASSWORD = 'correct horse battery';

let demo;
let browser;

before(async () => {
  rmSync(ARTIFACTS, { recursive: true, force: true });
  mkdirSync(ARTIFACTS, { recursive: true });
  demo = await startDemo();
  browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox'] });
});

after(async () => {
  await browser?.close().catch(() => {});
  await demo?.stop();
});

// ---------------------------------------------------------------------------------------------

test('a customer signs up, shops, is invoiced, cancels, sees the invoice voided and logs out', async (t) => {
  const context = await browser.newContext({ locale: 'en-US', viewport: { width: 1100, height: 900 } });
  const page = await context.newPage();
  const ada = customer('ada', 'Ada', 'Lovelace', 'Rheinweg 86', '53129', 'Bonn');
  demo.first = ada;
  let order;

  await t.test('the shell comes with a policy allowing only its own scripts, and shows the login first', async () => {
    const response = await page.goto(demo.url);
    const policy = response.headers()['content-security-policy'] || '';
    assert.match(policy, /script-src 'self'/);
    assert.doesNotMatch(policy, /unsafe-inline|unsafe-eval/);
    await page.waitForURL(/#\/login$/);
    await page.getByRole('heading', { name: 'Sign in' }).waitFor();
    assert.equal(await page.getByRole('button', { name: 'Log out' }).isVisible(), false, 'no Log out without a session');
    await step(page, '01-login');
  });

  await t.test('signing up leads to the login, which waits for the new account and signs in', async () => {
    await page.getByRole('link', { name: 'Create an account' }).click();
    await page.waitForURL(/#\/registration\/sign-up$/);
    await fillSignUp(page, ada, 'en');
    await step(page, '02-sign-up');
    await page.getByRole('button', { name: 'Create account' }).click();
    await page.waitForURL(/#\/login\?fresh=/, { timeout: STEP_MS });
    assert.equal(await page.getByLabel('Login name').inputValue(), ada.login);
    await page.getByLabel('Password').fill(PASSWORD);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.waitForURL(/#\/shop$/, { timeout: CATCH_UP_MS });
    await page.getByText(`Signed in as ${ada.login}`).waitFor();
  });

  await t.test("shop shows the home address from its own copy, and takes an order", async () => {
    const address = page.getByTestId('home-address');
    await address.waitFor({ timeout: CATCH_UP_MS });
    assert.match(await address.innerText(), /Rheinweg 86/);
    assert.match(await address.innerText(), /53129 Bonn/);
    await step(page, '03-shop');
    const quantities = page.locator('input[data-product]');
    assert.ok((await quantities.count()) >= 1, 'the catalogue lists products');
    await quantities.first().fill('2');
    await page.getByRole('button', { name: 'Place order' }).click();
    await page.waitForURL(/#\/shop\/orders\?placed=/, { timeout: STEP_MS });
    order = new URL(page.url().replace('#/', '')).searchParams.get('placed');
    assert.ok(order, page.url());
    await page.getByText(`Order ${order} has been placed`).waitFor();
    await page.locator(`li[data-order="${order}"] [data-status="placed"]`).waitFor();
    await step(page, '04-ordered');
  });

  await t.test('billing shows the invoice the batch unit made, with bill address and bank account from its copy', async () => {
    await page.getByRole('link', { name: 'Invoices' }).click();
    await page.waitForURL(/#\/billing$/);
    await page.locator(`li[data-order="${order}"] [data-status="open"]`).waitFor({ timeout: CATCH_UP_MS });
    assert.match(await page.getByTestId('bill-address').innerText(), /Rheinweg 86/);
    assert.match(await page.getByTestId('bank-account').innerText(), /DE89370400440532013000/);
    await step(page, '05-invoiced');
  });

  await t.test('deep links, reload and the back button keep their views', async () => {
    await page.reload();
    await page.locator(`li[data-order="${order}"]`).waitFor({ timeout: STEP_MS });
    await page.goBack();
    await page.waitForURL(/#\/shop\/orders/);
    await page.locator(`li[data-order="${order}"]`).waitFor({ timeout: STEP_MS });
    await page.goForward();
    await page.waitForURL(/#\/billing$/);
    await page.goto(`${demo.url}/#/registration/addresses`);
    const street = page.getByLabel('Street and number').first();
    await street.waitFor({ timeout: STEP_MS });
    assert.equal(await street.inputValue(), 'Rheinweg 86');
    await step(page, '06-own-details');
  });

  await t.test('cancelling the order voids its invoice', async () => {
    await page.goto(`${demo.url}/#/shop/orders`);
    await page.getByRole('button', { name: `Cancel order ${order}` }).click();
    await page.locator(`li[data-order="${order}"] [data-status="cancelled"]`).waitFor({ timeout: STEP_MS });
    await step(page, '07-cancelled');
    await page.getByRole('link', { name: 'Invoices' }).click();
    await page.locator(`li[data-order="${order}"] [data-status="void"]`).waitFor({ timeout: CATCH_UP_MS });
    await step(page, '08-void');
  });

  await t.test('logging out ends the session; a deep link then asks to sign in first', async () => {
    const token = await page.evaluate(() => JSON.parse(localStorage.getItem('hiscale.session')).token);
    await page.getByRole('button', { name: 'Log out' }).click();
    await page.waitForURL(/#\/login$/);
    await page.getByText('You have been logged out.').waitFor();
    assert.equal(await page.evaluate(() => localStorage.getItem('hiscale.session')), null);
    // The shell signed out at login: the token is refused everywhere within seconds.
    let answer = '';
    for (const deadline = Date.now() + 10000; Date.now() < deadline; await new Promise((done) => setTimeout(done, 200))) {
      const response = await fetch(`${demo.url}/shop/products`, { headers: { Authorization: `Bearer ${token}`, Accept: 'application/json' } });
      answer = `${response.status} ${await response.text()}`;
      if (answer.startsWith('401') && answer.includes('session-revoked')) break;
    }
    assert.match(answer, /^401 .*session-revoked/, 'the token still works after logging out');
    await page.goto(`${demo.url}/#/billing`);
    await page.waitForURL(/#\/login$/);
    await page.getByText('Please sign in first.').waitFor();
    assert.equal(await page.locator('[data-nav="billing"]').count(), 0, 'no invoices without a session');
    await step(page, '09-logged-out');
  });
  await context.close();
});

test('a second user, in German, in another browser context, sees none of the first one’s data', async (t) => {
  const context = await browser.newContext({ locale: 'de-DE', viewport: { width: 390, height: 844 } });
  const page = await context.newPage();
  const grace = customer('grace', 'Grace', 'Hopper', 'Lindenallee 7', '10115', 'Berlin');
  await page.goto(demo.url);
  await page.getByRole('heading', { name: 'Anmelden' }).waitFor();
  await page.getByRole('link', { name: 'Konto anlegen' }).click();
  await fillSignUp(page, grace, 'de');
  await step(page, '10-de-sign-up-phone');
  await page.getByRole('button', { name: 'Konto anlegen' }).click();
  await page.waitForURL(/#\/login\?fresh=/, { timeout: STEP_MS });
  await page.getByLabel('Passwort').fill(PASSWORD);
  await page.getByRole('button', { name: 'Anmelden' }).click();
  await page.waitForURL(/#\/shop$/, { timeout: CATCH_UP_MS });

  await t.test('shop: own address, no orders', async () => {
    const address = page.getByTestId('home-address');
    await address.waitFor({ timeout: CATCH_UP_MS });
    assert.match(await address.innerText(), /Lindenallee 7/);
    await page.goto(`${demo.url}/#/shop/orders`);
    await page.getByText('Sie haben noch nichts bestellt.').waitFor({ timeout: STEP_MS });
    await assertNothingOf(page, demo.first);
    await step(page, '11-de-shop-orders');
  });

  await t.test('billing: own bill address, no invoices', async () => {
    await page.goto(`${demo.url}/#/billing`);
    await page.getByText('Sie haben noch keine Rechnungen.').waitFor({ timeout: CATCH_UP_MS });
    await page.getByTestId('bill-address').waitFor({ timeout: CATCH_UP_MS });
    assert.match(await page.getByTestId('bill-address').innerText(), /Lindenallee 7/);
    await assertNothingOf(page, demo.first);
    await step(page, '12-de-billing');
  });

  await t.test('registration: own details only', async () => {
    await page.goto(`${demo.url}/#/registration/person`);
    const given = page.getByLabel('Vorname');
    await given.waitFor({ timeout: STEP_MS });
    assert.equal(await given.inputValue(), 'Grace');
    await assertNothingOf(page, demo.first);
    await step(page, '13-de-details');
  });

  await t.test('an SA held stopped by the supervisor: its plugin shows the error, the others keep working', async () => {
    await demo.admin('PUT', '/admin/held/billing');
    try {
      // The supervisor stops the units and the gateway's checks see them go: until then a
      // request may still reach a unit that is shutting down (a loaded machine takes seconds).
      await demo.waitFor('billing is held', async () => !(await fetch(`${demo.url}/billing/health`)).ok);
      await page.goto(`${demo.url}/#/billing`);
      const area = page.locator('[data-plugin="billing"]');
      await area.getByRole('heading', { name: /„Rechnungen“ ist gerade nicht erreichbar/ }).waitFor({ timeout: STEP_MS });
      assert.match(await area.innerText(), /Alle anderen Bereiche funktionieren weiter/);
      await step(page, '14-billing-held');
      await page.locator('[data-nav="shop"]').click();
      await page.getByTestId('home-address').waitFor({ timeout: STEP_MS });
      await page.goto(`${demo.url}/#/registration/addresses`);
      await page.getByLabel('Straße und Hausnummer').first().waitFor({ timeout: STEP_MS });
    } finally {
      // Released whatever happened above, so that a failure here is not every later test's.
      await demo.admin('DELETE', '/admin/held/billing');
      await demo.waitFor('billing is back', async () => (await fetch(`${demo.url}/billing/health`)).ok);
    }
  });

  await t.test('a plugin whose SA retired the interface version it needs is refused with a message', async () => {
    const serves = async () => (await (await fetch(`${demo.url}/registration/gui/manifest.json`)).json()).serves;
    await demo.admin('PUT', '/registration/admin/interfaces/v2', { state: 'retired' });
    try {
      // Both units agree (the gateway alternates between them) within the states' refresh.
      await demo.waitFor('v2 retired at both units', async () => !(await serves()).includes(2) && !(await serves()).includes(2));
      await page.goto(`${demo.url}/#/registration/person`);
      await page.getByRole('heading', { name: /„Ihre Daten“ muss aktualisiert werden/ }).waitFor({ timeout: STEP_MS });
      await step(page, '15-registration-outdated');
    } finally {
      await demo.admin('PUT', '/registration/admin/interfaces/v2', { state: 'active' });
      await demo.waitFor('v2 active at both units', async () => (await serves()).includes(2) && (await serves()).includes(2));
    }
  });

  await t.test('a plugin that throws shows the error in its own area', async () => {
    await context.route('**/shop/gui/plugin.js', (route) => route.fulfill({
      contentType: 'text/javascript',
      body: 'export function mount() { throw new Error("broken on purpose"); }',
    }));
    const broken = await context.newPage();
    await broken.goto(`${demo.url}/#/shop`);
    const area = broken.locator('[data-plugin="shop"]');
    await area.getByRole('heading', { name: /„Laden“ konnte nicht angezeigt werden/ }).waitFor({ timeout: STEP_MS });
    await step(broken, '16-shop-throws');
    await broken.locator('[data-nav="billing"]').click();
    await broken.getByTestId('bill-address').waitFor({ timeout: CATCH_UP_MS });
    await context.unroute('**/shop/gui/plugin.js');
    await broken.close();
  });

  await t.test('an expired session returns to the login', async () => {
    await page.evaluate(() => {
      const session = JSON.parse(localStorage.getItem('hiscale.session'));
      session.exp = Math.floor(Date.now() / 1000) - 1;
      localStorage.setItem('hiscale.session', JSON.stringify(session));
    });
    await page.goto(`${demo.url}/#/shop`);
    await page.waitForURL(/#\/login$/);
    await page.getByText('Ihre Sitzung ist abgelaufen').waitFor();
    await step(page, '17-expired');
  });
  await context.close();
});

// ---------------------------------------------------------------------------------------------

function customer(name, given, family, street, zip, city) {
  const suffix = Math.random().toString(36).slice(2, 8);
  return { login: `${name}-${suffix}`, given, family, street, zip, city };
}

async function fillSignUp(page, who, lang) {
  const label = lang === 'de'
    ? { login: 'Benutzername', password: 'Passwort', given: 'Vorname', family: 'Nachname', street: 'Straße und Hausnummer', zip: 'Postleitzahl', city: 'Ort', iban: 'IBAN' }
    : { login: 'Login name', password: 'Password', given: 'Given name', family: 'Family name', street: 'Street and number', zip: 'Postcode', city: 'City', iban: 'IBAN' };
  await page.getByLabel(label.login).fill(who.login);
  await page.getByLabel(label.password, { exact: true }).fill(PASSWORD);
  await page.getByLabel(label.given).fill(who.given);
  await page.getByLabel(label.family).fill(who.family);
  await page.getByLabel(label.street).fill(who.street);
  await page.getByLabel(label.zip).fill(who.zip);
  await page.getByLabel(label.city, { exact: true }).fill(who.city);
  await page.getByLabel(label.iban).fill('DE89 3704 0044 0532 0130 00');
}

/** The page shows nothing of the other customer: name, login, street. */
async function assertNothingOf(page, other) {
  const text = await page.locator('body').innerText();
  for (const value of [other.login, other.family, other.street]) {
    assert.ok(!text.includes(value), `the page shows ${value} of another customer`);
  }
}

/** A screenshot of the step, after axe-core found no serious or critical violation on it. */
async function step(page, name) {
  await page.evaluate(AXE_SOURCE);
  const results = await page.evaluate(() => window.axe.run(document, { resultTypes: ['violations'] }));
  const severe = results.violations.filter((violation) => ['serious', 'critical'].includes(violation.impact));
  await page.screenshot({ path: path.join(ARTIFACTS, `${name}.png`), fullPage: true });
  assert.deepEqual(
    severe.map((violation) => `${violation.id}: ${violation.help} (${violation.nodes.map((node) => node.target.join(' ')).join(', ')})`),
    [],
    `accessibility violations on ${name}`,
  );
}

// ---------------------------------------------------------------------------------------------
// The demo: a real `hiscale demo`, stopped (with every unit) however the suite ends.

async function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

async function startDemo() {
  const dataDir = mkdtempSync(path.join(tmpdir(), 'hiscale-gui-'));
  const port = await freePort();
  const child = spawn(BINARY, ['demo', '--port', String(port), '--data-dir', dataDir, '--sample', '3'], {
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true, // its own process group: the units go with it on the last resort below
  });
  let output = '';
  child.stdout.on('data', (chunk) => { output += chunk; });
  child.stderr.on('data', (chunk) => { output += chunk; });
  const killGroup = () => {
    try { process.kill(-child.pid, 'SIGKILL'); } catch { /* already gone */ }
  };
  process.once('exit', killGroup);
  const exited = new Promise((resolve) => child.once('exit', resolve));
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + DEMO_START_MS;
  while (!output.includes('HiScale REST demo is running.')) {
    if (child.exitCode !== null || Date.now() > deadline) {
      killGroup();
      // A unit's own reason for exiting can lie far above the tail: name every error first.
      const errors = output.split('\n').filter((line) => /ERROR|error|exited|panicked/.test(line));
      throw new Error(`the demo did not start (exit ${child.exitCode}); lines naming errors:\n` +
        `${errors.slice(-60).join('\n')}\n--- the output's end:\n${output.slice(-4000)}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  const tokens = JSON.parse(readFileSync(path.join(dataDir, 'tokens.json'), 'utf8'));
  return {
    url,
    async admin(method, target, body) {
      const response = await fetch(`${url}${target}`, {
        method,
        headers: { Authorization: `Bearer ${tokens.admin}`, 'Content-Type': 'application/json', Accept: 'application/json' },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      assert.ok(response.ok, `${method} ${target}: ${response.status} ${await response.text()}`);
    },
    /** Polls `check` every 250 ms until it holds, for at most 30 s. */
    async waitFor(what, check) {
      const deadline = Date.now() + 30_000;
      for (;;) {
        if (await check().catch(() => false)) return;
        if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
        await new Promise((resolve) => setTimeout(resolve, 250));
      }
    },
    async stop() {
      child.kill('SIGTERM');
      const stopped = await Promise.race([exited.then(() => true), new Promise((resolve) => setTimeout(() => resolve(false), 20_000))]);
      killGroup();
      if (!stopped) console.error('the demo did not stop within 20 s of SIGTERM; killed it');
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}
