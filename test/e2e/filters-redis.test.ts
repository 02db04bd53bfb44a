import { createHash } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { waitFor } from '../harness/process.js';
import { startRedis, type TestRedis } from '../harness/redis.js';
import { request, type HttpAnswer } from '../harness/traffic.js';
import { startEchoUpstream, type EchoUpstream } from '../harness/upstreams.js';
import { registerSecrets } from '../harness/secrets.js';
import { startReplicatedGateway, type ReplicatedGateway } from '../harness/filter-replicas.js';

/**
 * Two filter-service replicas (`flowgate filters`, each taking its policy over xDS from its own control
 * plane) share one real Redis; two Envoys, one per replica, send the traffic. One limit, one quota: what one
 * replica counts, the other enforces. Redis down: the policy chooses fail-closed or fail-open.
 */

const KEY = 'shared-key-0123456789';
const sha = createHash('sha256').update(KEY).digest('hex');

let redis: TestRedis;
let echo: EchoUpstream;
let llm: EchoUpstream;
const gateways: ReplicatedGateway[] = [];
const bases: string[] = [];

function policyFiles(listener: number, filters: number): Record<string, string> {
  return {
    'gateway.yaml': `kind: Gateway\nlisteners: [{ name: public, address: 127.0.0.1, port: ${listener} }]\nfilterService: { address: 127.0.0.1, port: ${filters}, timeout: 1s }\n`,
    'consumers.yaml': `kind: Consumer
name: shared
apiKeys: [{ id: k1, sha256: ${sha} }]
rateLimits: [{ requests: 5, per: minute, model: limited }]
tokenQuotas: [{ tokens: 1000, per: hour, count: total, model: chat }]
`,
    'models.yaml': `kind: Model
name: limited
upstream: { addressTemplate: "127.0.0.1:${echo.port}" }
traffic: { stable: { version: "1" } }
access: { consumers: [shared] }
---
kind: Model
name: chat
upstream: { addressTemplate: "127.0.0.1:${llm.port}" }
traffic: { stable: { version: "1" } }
access: { consumers: [shared] }
---
kind: Model
name: relaxed
upstream: { addressTemplate: "127.0.0.1:${echo.port}" }
traffic: { stable: { version: "1" } }
rateLimits: [{ requests: 1000, per: minute }]
failOpen: true
`,
  };
}

const post = (i: number, path: string, headers: Record<string, string> = { 'x-api-key': KEY }): Promise<HttpAnswer> =>
  request(`${bases[i] ?? ''}${path}`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: '{}' });

beforeAll(async () => {
  registerSecrets(KEY);
  redis = await startRedis();
  echo = await startEchoUpstream('echo');
  llm = await startEchoUpstream('llm', () => ({ body: JSON.stringify({ usage: { prompt_tokens: 100, completion_tokens: 300, total_tokens: 400 } }) }));
  const dir = mkdtempSync(join(tmpdir(), 'flowgate-redis-'));
  writeFileSync(join(dir, 'registry.json'), JSON.stringify({ models: ['limited', 'chat', 'relaxed'].map((name) => ({ name, versions: [{ version: '1' }] })) }));
  for (const i of [0, 1]) {
    const gateway = await startReplicatedGateway({ name: 'redis', index: i, dir, registryFile: join(dir, 'registry.json'), redisUrl: redis.url, files: policyFiles });
    gateways.push(gateway);
    bases.push(gateway.base);
    await waitFor(`envoy ${i} routes`, async () => ((await post(i, '/models/relaxed', {})).status === 200 ? true : undefined));
  }
}, 180_000);

afterAll(async () => {
  for (const g of gateways) await g.stop();
  await redis?.stop();
  await echo?.close();
  await llm?.close();
});

test('two replicas sharing Redis enforce one 5-per-minute limit together', async () => {
  const statuses: number[] = [];
  for (let n = 0; n < 6; n++) statuses.push((await post(n % 2, '/models/limited')).status);
  expect(statuses).toEqual([200, 200, 200, 200, 200, 429]);
  expect((await post(0, '/models/limited')).status).toBe(429);
  expect((await post(1, '/models/limited')).status).toBe(429);
});

test('a token quota charged through one replica is enforced by the other', async () => {
  expect((await post(0, '/models/chat')).status).toBe(200);
  expect((await post(0, '/models/chat')).status).toBe(200);
  const third = await waitFor('the quota to be seen by replica 1', async () => {
    const a = await post(1, '/models/chat');
    return a.status === 429 ? a : undefined;
  }, { timeoutMs: 5000 });
  expect(JSON.parse(third.text)).toMatchObject({ error: 'token_quota_exhausted' });
});

test('Redis down: a fail-closed model is refused, a fail-open one served; Redis back: counting resumes', async () => {
  await redis.stop();
  const closed = await post(0, '/models/chat');
  expect(closed.status).toBe(503);
  expect((await post(1, '/models/relaxed', {})).status).toBe(200);
  const errors = await waitFor('store errors in the replica metrics', async () => {
    const text = await (await fetch(`http://127.0.0.1:${replicaAdminPort(0)}/metrics`)).text();
    const n = [...text.matchAll(/flowgate_filter_store_errors_total\{[^}]*\} (\d+)/g)].reduce((s, m) => s + Number(m[1]), 0);
    return n > 0 ? n : undefined;
  });
  expect(errors).toBeGreaterThan(0);
  await redis.restart();
  await waitFor('counting to resume', async () => ((await post(1, '/models/relaxed', {})).headers.get('ratelimit-limit') === '1000' ? true : undefined), { timeoutMs: 15_000 });
});

/** The admin port a replica was started with (from its command line). */
function replicaAdminPort(i: number): number {
  const args = (gateways[i]?.replica.child.spawnargs ?? []);
  return Number((args[args.indexOf('--admin-listen') + 1] ?? '').split(':')[1]);
}
