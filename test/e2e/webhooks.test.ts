import { execFile } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { signDelivery, WEBHOOK_HEADERS } from '../../src/registry/webhook-signature.js';
import { makeCertificates, type TestCertificates } from '../harness/certs.js';
import { startEnvoy, type EnvoyProcess } from '../harness/envoy.js';
import { cliArgs, startFlowgate, type FlowgateProcess } from '../harness/flowgate.js';
import { startMlflow, type MlflowServer } from '../harness/mlflow.js';
import { freePort } from '../harness/ports.js';
import { waitFor } from '../harness/process.js';
import { registerSecrets } from '../harness/secrets.js';
import { request } from '../harness/traffic.js';
import { startEchoUpstream, type EchoUpstream } from '../harness/upstreams.js';
import { repoRoot } from '../harness/venv.js';

/**
 * MLflow webhooks end to end: a real MLflow server delivers signed webhooks over HTTPS (a test CA) to
 * `flowgate serve`, registered with `flowgate webhooks register`. Flowgate polls only every 60 s here, so a
 * change that reaches Envoy while the poll counter stands still came through the webhook. Forged, replayed,
 * stale and unsigned deliveries are refused and counted; when MLflow is down and its deliveries are lost,
 * polling does the work.
 */

const run = promisify(execFile);
const MODEL = 'fraud';
const POLL_MS = 60_000;

let certs: TestCertificates;
let mlflow: MlflowServer;
let flowgate: FlowgateProcess;
let envoy: EnvoyProcess;
const upstreams: EchoUpstream[] = [];
let secret: string;
let secretFile: string;
let webhookPort: number;
let url: string;
let mlflowEnv: Record<string, string>;
let policyDir: string;
let listenerPort: number;

const POLICY = (port: number): string => `kind: Gateway
listeners:
  - { name: public, address: 127.0.0.1, port: ${port} }
---
kind: Model
name: ${MODEL}
upstream: { versionTag: flowgate.address }
traffic:
  stable: { alias: champion }
`;

const sample = (name: string, labels = ''): string => `${name}${labels}`;
const metric = async (name: string, labels = ''): Promise<number> => (await flowgate.metric(sample(name, labels))) ?? 0;
const polls = (): Promise<number> => metric('flowgate_registry_sync_total', '{result="ok"}');
const deliveries = (result: string): Promise<number> => metric('flowgate_webhook_deliveries_total', `{result="${result}"}`);
const refreshes = (result: string): Promise<number> => metric('flowgate_registry_refresh_total', `{trigger="webhook",result="${result}"}`);

/** The version Envoy serves now (x-flowgate-model-version of one request). */
async function servedVersion(): Promise<string | undefined> {
  const a = await request(url, { method: 'POST', body: '{"x":1}', headers: { 'content-type': 'application/json' } });
  return a.status === 200 ? (a.headers.get('x-flowgate-model-version') ?? undefined) : undefined;
}

async function untilServed(version: string, timeoutMs = 30_000): Promise<void> {
  await waitFor(`Envoy serving version ${version}`, async () => ((await servedVersion()) === version ? true : undefined), {
    timeoutMs,
    intervalMs: 50,
    describe: () => flowgate.process.tail(30),
  });
}

/** POSTs a delivery to Flowgate's receiver over HTTPS (trusting the test CA); resolves with status and body. */
function deliver(body: string, headers: Record<string, string>): Promise<{ status: number; json: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      { host: '127.0.0.1', port: webhookPort, path: '/webhooks/mlflow', method: 'POST', ca: readFileSync(certs.ca), headers: { 'content-type': 'application/json', ...headers } },
      (res) => {
        let text = '';
        res.on('data', (c: Buffer) => (text += c.toString('utf8')));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, json: JSON.parse(text) as Record<string, unknown> }));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

/** A delivery signed the way MLflow signs (checked against MLflow's own code in webhook-signature.test.ts). */
function signed(model: string, options: { id?: string; ageSeconds?: number; key?: string } = {}): { body: string; headers: Record<string, string> } {
  const id = options.id ?? randomUUID();
  const ts = Math.floor(Date.now() / 1000) - (options.ageSeconds ?? 0);
  const body = JSON.stringify({ entity: 'model_version_alias', action: 'created', timestamp: new Date().toISOString(), data: { name: model, alias: 'champion', version: '1' } });
  return { body, headers: { [WEBHOOK_HEADERS.deliveryId]: id, [WEBHOOK_HEADERS.timestamp]: String(ts), [WEBHOOK_HEADERS.signature]: signDelivery(options.key ?? secret, id, ts, body) } };
}

async function cli(...args: string[]): Promise<string> {
  const [cmd, argv] = cliArgs(args);
  const { stdout } = await run(cmd, argv, { cwd: repoRoot, env: { ...process.env, FLOWGATE_LOG_LEVEL: 'warn' } });
  return stdout;
}

beforeAll(async () => {
  certs = makeCertificates({ webhook: 'IP:127.0.0.1,DNS:localhost' });
  secret = randomBytes(24).toString('hex');
  // Fernet key: MLflow encrypts webhook secrets with it, and a fixed one keeps them readable across restarts.
  const fernetKey = randomBytes(32).toString('base64url') + '=';
  registerSecrets(secret, fernetKey);
  const dir = mkdtempSync(join(tmpdir(), 'flowgate-webhooks-'));
  secretFile = join(dir, 'webhook-secret');
  writeFileSync(secretFile, `${secret}\n`, { mode: 0o600 });
  // Loopback deliveries need the private-IP switch; a 1 s webhook cache lets MLflow see a webhook at once.
  mlflowEnv = { MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS: 'true', MLFLOW_WEBHOOK_CACHE_TTL: '1', MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY: fernetKey };
  mlflow = await startMlflow({ name: 'mlflow-webhooks', env: mlflowEnv, trustCa: certs.ca });
  for (const name of ['v1', 'v2']) upstreams.push(await startEchoUpstream(name));
  await mlflow.admin.createRegisteredModel(MODEL);
  for (const [i, u] of upstreams.entries()) {
    await mlflow.admin.createModelVersion({ name: MODEL, source: `s3://models/${MODEL}/${i + 1}`, tags: { 'flowgate.address': `127.0.0.1:${u.port}` } });
  }
  await mlflow.admin.setAlias(MODEL, 'champion', '1');
  // In MLflow from the start, but named by no policy until a test adds one.
  await mlflow.admin.createRegisteredModel('churn');
  await mlflow.admin.createModelVersion({ name: 'churn', source: 's3://models/churn/1', tags: { 'flowgate.address': `127.0.0.1:${upstreams[0]?.port ?? 0}` } });
  await mlflow.admin.setAlias('churn', 'champion', '1');

  policyDir = mkdtempSync(join(tmpdir(), 'flowgate-policy-'));
  listenerPort = await freePort();
  writeFileSync(join(policyDir, 'policy.yaml'), POLICY(listenerPort));
  url = `http://127.0.0.1:${listenerPort}/models/${MODEL}`;
  webhookPort = await freePort();
  const webhook = certs.leaf('webhook');
  flowgate = await startFlowgate({
    policyDir,
    mlflowUri: mlflow.uri,
    pollIntervalMs: POLL_MS,
    name: 'flowgate-webhooks',
    extraArgs: ['--webhook-listen', `127.0.0.1:${webhookPort}`, '--webhook-secret-file', secretFile, '--webhook-tls-cert', webhook.cert, '--webhook-tls-key', webhook.key],
  });
  envoy = await startEnvoy({ nodeId: 'e2e-webhooks', nodeCluster: 'e2e', xdsHost: '127.0.0.1', xdsPort: flowgate.xdsPort });
  await untilServed('1');
}, 240_000);

afterAll(async () => {
  await envoy?.stop();
  await flowgate?.stop();
  await mlflow?.stop();
  await Promise.all(upstreams.map((u) => u.close()));
});

describe('MLflow webhooks into flowgate serve', () => {
  test('flowgate webhooks register creates one webhook (twice: still one), list shows it, and MLflow test-delivers to it', async () => {
    const created = await cli('webhooks', 'register', '--mlflow-uri', mlflow.uri, '--url', `https://127.0.0.1:${webhookPort}`, '--secret-file', secretFile);
    expect(created).toMatch(/^created \S+ {2}flowgate {2}ACTIVE {2}https:\/\/127\.0\.0\.1:\d+\/webhooks\/mlflow/);
    const again = await cli('webhooks', 'register', '--mlflow-uri', mlflow.uri, '--url', `https://127.0.0.1:${webhookPort}/webhooks/mlflow`, '--secret-file', secretFile);
    expect(again).toMatch(/^updated /);
    const listed = await cli('webhooks', 'list', '--mlflow-uri', mlflow.uri);
    expect(listed.match(/ flowgate /g)).toHaveLength(1);
    expect(listed).toContain('model_version_alias.created');
    expect(listed).not.toContain(secret);
    // MLflow's test delivery: its example payload names `example_model`, which the policy does not use.
    const accepted = await deliveries('accepted');
    expect((await cli('webhooks', 'test', '--mlflow-uri', mlflow.uri)).trim()).toMatch(/^delivered: HTTP 202/);
    expect(await deliveries('accepted')).toBe(accepted + 1);
    expect(await refreshes('untracked')).toBeGreaterThanOrEqual(1);
  }, 120_000);

  test('an alias move reaches Envoy through the webhook, with no poll in between', async () => {
    const pollsBefore = await polls();
    const acceptedBefore = await deliveries('accepted');
    const mergedBefore = await refreshes('merged');
    await mlflow.admin.setAlias(MODEL, 'champion', '2');
    await untilServed('2');
    expect(await deliveries('accepted')).toBeGreaterThan(acceptedBefore);
    expect(await refreshes('merged')).toBeGreaterThan(mergedBefore);
    // The 60 s poll did not run: the webhook brought the change.
    expect(await polls()).toBe(pollsBefore);
    const logged = flowgate.logLines().filter((l) => l.msg === 'webhook accepted; re-reading the model' && l.model === MODEL);
    expect(logged.length).toBeGreaterThan(0);
  }, 60_000);

  test('a policy edit naming a model no poll has fetched is applied at once, not rejected (policy scope)', async () => {
    const pollsBefore = await polls();
    const rejectedBefore = await metric('flowgate_policy_reloads_total', '{result="rejected"}');
    const onDemandBefore = await metric('flowgate_registry_refresh_total', '{trigger="policy",result="merged"}');
    writeFileSync(join(policyDir, 'churn.yaml'), 'kind: Model\nname: churn\nupstream: { versionTag: flowgate.address }\ntraffic:\n  stable: { alias: champion }\n');
    const churnUrl = `http://127.0.0.1:${listenerPort}/models/churn`;
    await waitFor('the new model through Envoy', async () => ((await request(churnUrl, { method: 'POST', body: '{}' })).status === 200 ? true : undefined), {
      describe: () => flowgate.process.tail(30),
    });
    expect(await metric('flowgate_registry_refresh_total', '{trigger="policy",result="merged"}')).toBe(onDemandBefore + 1);
    expect(await metric('flowgate_policy_reloads_total', '{result="rejected"}')).toBe(rejectedBefore);
    expect(await polls()).toBe(pollsBefore);
  }, 60_000);

  test('forged, replayed, stale and unsigned deliveries are refused and counted; none re-reads a model', async () => {
    const before = Object.fromEntries(await Promise.all(['accepted', 'bad_signature', 'replayed', 'stale', 'unsigned'].map(async (r) => [r, await deliveries(r)] as const)));
    const refreshesBefore = await refreshes('merged');

    const forged = signed(MODEL, { key: 'not-the-secret-0123456789' });
    const answer = await deliver(forged.body, forged.headers);
    expect([answer.status, answer.json.error]).toEqual([401, 'bad_signature']);
    expect(String(answer.json.message)).toContain('does not match');

    const { [WEBHOOK_HEADERS.signature]: _dropped, ...unsignedHeaders } = signed(MODEL).headers;
    const unsigned = await deliver(signed(MODEL).body, unsignedHeaders);
    expect([unsigned.status, unsigned.json.error]).toEqual([401, 'unsigned']);

    const stale = signed(MODEL, { ageSeconds: 600 });
    expect((await deliver(stale.body, stale.headers)).json.error).toBe('stale');

    const genuine = signed(MODEL);
    expect((await deliver(genuine.body, genuine.headers)).status).toBe(202);
    await waitFor('the genuine delivery re-read', async () => ((await refreshes('merged')) === refreshesBefore + 1 ? true : undefined));
    const replayed = await deliver(genuine.body, genuine.headers);
    expect([replayed.status, replayed.json.error]).toEqual([409, 'replayed']);
    expect(String(replayed.json.message)).toContain('already received');

    expect(await deliveries('bad_signature')).toBe(before.bad_signature! + 1);
    expect(await deliveries('unsigned')).toBe(before.unsigned! + 1);
    expect(await deliveries('stale')).toBe(before.stale! + 1);
    expect(await deliveries('replayed')).toBe(before.replayed! + 1);
    expect(await deliveries('accepted')).toBe(before.accepted! + 1);
    // Only the genuine delivery led to a re-read, and the route did not move (the registry did not change).
    expect(await refreshes('merged')).toBe(refreshesBefore + 1);
    expect(await servedVersion()).toBe('2');
    expect(flowgate.process.tail(100_000)).not.toContain(secret);
  }, 60_000);

  test('MLflow down and its deliveries lost: Envoy keeps serving, and polling brings the change once MLflow is back', async () => {
    // Without the private-IP switch MLflow refuses to deliver to loopback: its webhooks are lost from here on.
    const blocked = { ...mlflowEnv, MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS: 'false' };
    await mlflow.restart(blocked);
    const acceptedBefore = await deliveries('accepted');
    await mlflow.admin.setAlias(MODEL, 'champion', '1');
    await waitFor('MLflow to give up the delivery', () => (/Failed to send webhook[^\n]*model_version_alias/.test(mlflow.process.tail(400)) ? true : undefined), { timeoutMs: 30_000 });
    expect(await servedVersion()).toBe('2');

    // MLflow goes down. A delivery that got out before (sent here by the test) asks for a re-read that fails.
    await mlflow.stop();
    const failedBefore = await refreshes('failed');
    const errorsBefore = await metric('flowgate_registry_sync_total', '{result="error"}');
    const late = signed(MODEL);
    expect((await deliver(late.body, late.headers)).status).toBe(202);
    await waitFor('the failed re-read', async () => ((await refreshes('failed')) > failedBefore ? true : undefined));
    // Polling takes over at once, long before the 60 s interval: it fails while MLflow is down...
    await waitFor('a failed poll', async () => ((await metric('flowgate_registry_sync_total', '{result="error"}')) > errorsBefore ? true : undefined), { timeoutMs: 20_000 });
    expect(await servedVersion()).toBe('2');

    // ...and once MLflow is back, the next retry reads the alias move that no webhook announced.
    const pollsBefore = await polls();
    await mlflow.restart(blocked);
    await untilServed('1', 45_000);
    expect(await polls()).toBeGreaterThan(pollsBefore);
    // The only accepted delivery was the test's own: MLflow's were lost.
    expect(await deliveries('accepted')).toBe(acceptedBefore + 1);
  }, 180_000);
});
