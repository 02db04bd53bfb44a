import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { launchChromium } from '../harness/browser.js';
import { startEnvoy, type EnvoyProcess } from '../harness/envoy.js';
import { startFlowgate, type FlowgateProcess } from '../harness/flowgate.js';
import { startMlflow, type MlflowServer } from '../harness/mlflow.js';
import { freePort } from '../harness/ports.js';
import { logDir, waitFor } from '../harness/process.js';
import { startModelUpstream, type ModelUpstream } from '../harness/rollouts.js';
import { registerSecrets } from '../harness/secrets.js';
import { request, steadyLoad } from '../harness/traffic.js';
import { repoRoot } from '../harness/venv.js';

/**
 * The web console in headless Chromium (Debian's package) against a control plane running a real rollout
 * (real MLflow, Envoy and traffic): the page loads with no console error, shows the rollout's step and
 * chart, follows the step as it changes without a reload, is read-only until the admin token is typed,
 * then pauses the rollout from its button, and lists a rejected policy edit. Screenshots go to the test log
 * directory.
 */

const TOKEN = 'console-e2e-admin-token-abcdef0123';
registerSecrets(TOKEN);

let mlflow: MlflowServer;
let flowgate: FlowgateProcess;
let envoy: EnvoyProcess;
let browser: Browser;
let page: Page;
let policyDir: string;
const upstreams: ModelUpstream[] = [];
const problems: string[] = [];

beforeAll(async () => {
  // The bundle the admin server serves is the one built from these sources now.
  execFileSync(process.execPath, [join(repoRoot, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', join(repoRoot, 'src', 'console', 'web', 'tsconfig.json')], { cwd: repoRoot });
  mlflow = await startMlflow();
  await mlflow.admin.createRegisteredModel('scorer');
  for (let i = 0; i < 2; i++) {
    const u = await startModelUpstream(`scorer-${i + 1}`, i === 1 ? { delayMs: 5 } : {});
    upstreams.push(u);
    await mlflow.admin.createModelVersion({ name: 'scorer', source: 's3://models/scorer', tags: { 'flowgate.address': `127.0.0.1:${u.port}` } });
  }
  await mlflow.admin.setAlias('scorer', 'champion', '1');
  const listener = await freePort();
  policyDir = mkdtempSync(join(tmpdir(), 'flowgate-console-policy-'));
  writeFileSync(join(policyDir, 'gateway.yaml'), `kind: Gateway\nlisteners: [{ name: public, address: 127.0.0.1, port: ${listener} }]\n`);
  writeFileSync(
    join(policyDir, 'scorer.yaml'),
    'kind: Model\nname: scorer\nupstream: { versionTag: flowgate.address }\ntraffic: { stable: { alias: champion } }\n---\nkind: Rollout\nmodel: scorer\nsteps: [10, 30, 60, 90]\ninterval: 3s\nminRequests: 2\ninconclusiveLimit: 5\nonSuccess: pause\n',
  );
  const tokenFile = join(mkdtempSync(join(tmpdir(), 'flowgate-token-')), 'token');
  writeFileSync(tokenFile, TOKEN);
  flowgate = await startFlowgate({ policyDir, mlflowUri: mlflow.uri, pollIntervalMs: 500, name: 'flowgate-console', extraArgs: ['--rollout-tick', '250ms', '--admin-token-file', tokenFile] });
  envoy = await startEnvoy({ nodeId: 'e2e-console', nodeCluster: 'console', xdsHost: '127.0.0.1', xdsPort: flowgate.xdsPort });
  const url = `http://127.0.0.1:${listener}/models/scorer`;
  await waitFor('the route', async () => ((await request(url, { method: 'POST', body: '{}' })).status === 200 ? true : undefined), { timeoutMs: 30_000 });
  load = steadyLoad([url], { concurrency: 3, init: () => ({ method: 'POST', body: '{}' }) });
  browser = await launchChromium();
  page = await browser.newPage({ viewport: { width: 1280, height: 1000 } });
  page.on('console', (m) => {
    if (m.type() === 'error') problems.push(`console error: ${m.text()}`);
  });
  page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
  page.on('requestfailed', (r) => problems.push(`request failed: ${r.url()}`));
}, 180_000);

let load: ReturnType<typeof steadyLoad> | undefined;

afterAll(async () => {
  await load?.stop();
  await browser?.close();
  await envoy?.stop();
  await flowgate?.stop();
  await mlflow?.stop();
  for (const u of upstreams) await u.close();
});

const card = (): ReturnType<Page['locator']> => page.locator('[data-testid="rollout-scorer"]');

test('loads with no console error, and shows the fleet and the models', async () => {
  const res = await page.goto(`${flowgate.adminUrl}/console`);
  expect(res?.status()).toBe(200);
  expect(res?.headers()['content-security-policy']).toContain("script-src 'self'");
  await page.locator('#fleet table').waitFor();
  expect(await page.locator('#fleet').innerText()).toContain('e2e-console');
  expect(await page.locator('#models').innerText()).toMatch(/scorer\s+v1\s+stable\s+100%/);
  expect(await page.locator('#mode').innerText()).toBe('read-only');
  expect(problems).toEqual([]);
});

test('shows the rollout\'s current step and chart, and follows the step without a reload', async () => {
  await mlflow.admin.setAlias('scorer', 'challenger', '2');
  await waitFor('the first step on the page', async () => ((await card().getAttribute('data-phase', { timeout: 1000 })) === 'progressing' ? true : undefined), { timeoutMs: 20_000 });
  const first = Number(await card().getAttribute('data-step'));
  expect(await card().locator('[data-testid="step"]').innerText()).toMatch(new RegExp(`step ${first + 1} of 4 at \\d+%`));
  const chart = card().locator('svg[data-testid="chart-scorer"]');
  expect(Number(await chart.getAttribute('data-points'))).toBeGreaterThanOrEqual(1);
  expect(await chart.locator('path.weight').count()).toBe(1);
  await page.screenshot({ path: join(logDir(), 'console-rollout-first-step.png'), fullPage: true });
  const navigations: string[] = [];
  page.on('framenavigated', (f) => navigations.push(f.url()));
  await waitFor('the next step on the page', async () => (Number(await card().getAttribute('data-step')) > first ? true : undefined), { timeoutMs: 30_000 });
  const step = Number(await card().getAttribute('data-step'));
  expect(await card().getAttribute('data-weight')).toBe(String([10, 30, 60, 90][step]));
  expect(await card().locator('[data-testid="step"]').innerText()).toContain(`step ${step + 1} of 4`);
  expect(Number(await chart.getAttribute('data-points'))).toBeGreaterThanOrEqual(2);
  expect(await chart.locator('line.decision[data-decision="step"]').count()).toBeGreaterThanOrEqual(1);
  expect(navigations).toEqual([]);
  await page.screenshot({ path: join(logDir(), 'console-rollout-next-step.png'), fullPage: true });
  expect(problems).toEqual([]);
}, 60_000);

test('read-only until the admin token is typed; then its pause button pauses the rollout', async () => {
  expect(await card().locator('button[data-command="pause"]').isDisabled()).toBe(true);
  await page.fill('#token', TOKEN);
  await page.click('#token-apply');
  await waitFor('admin mode', async () => ((await page.locator('#mode').innerText()) === 'admin' ? true : undefined));
  await waitFor('the buttons enabled', async () => ((await card().locator('button[data-command="pause"]').isEnabled()) ? true : undefined));
  await card().locator('button[data-command="pause"]').click();
  await waitFor('paused on the page', async () => ((await card().getAttribute('data-phase')) === 'paused' ? true : undefined), { timeoutMs: 20_000 });
  expect(await card().locator('[data-testid="reason"]').innerText()).toBe('paused by the admin API');
  expect(await page.locator('body').innerText()).not.toContain('console-e2e-admin-token');
  expect(problems).toEqual([]);
}, 40_000);

test('lists a rejected policy edit with its file and line', async () => {
  writeFileSync(join(policyDir, 'broken.yaml'), 'kind: Rollout\nmodel: nosuchmodel\n');
  await waitFor('the rejection on the page', async () => ((await page.locator('#rejections').innerText()).includes('nosuchmodel') ? true : undefined), { timeoutMs: 20_000 });
  expect(await page.locator('#rejections').innerText()).toMatch(/broken\.yaml:2:\d+\s+model\s+reference to an unknown model 'nosuchmodel'/);
  await page.screenshot({ path: join(logDir(), 'console-rejection.png'), fullPage: true });
  expect(problems).toEqual([]);
}, 30_000);
