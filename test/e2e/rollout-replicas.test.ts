import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { startEnvoy, type EnvoyProcess } from '../harness/envoy.js';
import { startFlowgate, type FlowgateProcess } from '../harness/flowgate.js';
import { startMlflow, type MlflowServer } from '../harness/mlflow.js';
import { freePort } from '../harness/ports.js';
import { waitFor } from '../harness/process.js';
import { startRedis, type TestRedis } from '../harness/redis.js';
import { aliasesOf, servedRollout, startModelUpstream, versionTags, type ModelUpstream } from '../harness/rollouts.js';
import { request, steadyLoad } from '../harness/traffic.js';

/**
 * A rollout with two control-plane replicas sharing one Redis and one MLflow, each feeding its own Envoy;
 * both Envoys listen on the same port (SO_REUSEPORT), so the traffic is split between them and each replica
 * hears only its own Envoy's access logs. Proven: one lease holder; both replicas publish the same snapshot
 * version at every step (the weight comes from MLflow tags, not from who decided); killing the lease holder
 * mid-rollout lets the other replica take the lease and continue from the state in MLflow without a jump.
 */

const INTERVAL_MS = 3000;
const LEASE_TTL_MS = 2000;
const STEPS = [20, 40, 60, 80];

let redis: TestRedis;
let mlflow: MlflowServer;
const replicas: FlowgateProcess[] = [];
const envoys: EnvoyProcess[] = [];
const upstreams: ModelUpstream[] = [];
let url: string;

interface Lease {
  holder: string | null;
  thisReplica: string;
  held: boolean;
}

async function lease(r: FlowgateProcess): Promise<Lease> {
  return ((await (await fetch(`${r.adminUrl}/api/rollouts`)).json()) as { lease: Lease }).lease;
}

async function snapshotVersion(r: FlowgateProcess): Promise<string | undefined> {
  return ((await (await fetch(`${r.adminUrl}/debug/snapshot`)).json()) as { versions: Record<string, string> }).versions.ads;
}

beforeAll(async () => {
  redis = await startRedis();
  mlflow = await startMlflow();
  await mlflow.admin.createRegisteredModel('ranker');
  for (let i = 0; i < 2; i++) {
    const u = await startModelUpstream(`ranker-${i + 1}`);
    upstreams.push(u);
    await mlflow.admin.createModelVersion({ name: 'ranker', source: 's3://models/ranker', tags: { 'flowgate.address': `127.0.0.1:${u.port}` } });
  }
  await mlflow.admin.setAlias('ranker', 'champion', '1');
  const listener = await freePort();
  url = `http://127.0.0.1:${listener}/models/ranker`;
  const dir = mkdtempSync(join(tmpdir(), 'flowgate-replicas-policy-'));
  writeFileSync(join(dir, 'gateway.yaml'), `kind: Gateway\nlisteners: [{ name: public, address: 127.0.0.1, port: ${listener} }]\n`);
  writeFileSync(
    join(dir, 'ranker.yaml'),
    `kind: Model\nname: ranker\nupstream: { versionTag: flowgate.address }\ntraffic: { stable: { alias: champion } }\n---\nkind: Rollout\nmodel: ranker\nsteps: [${STEPS.join(', ')}]\ninterval: ${INTERVAL_MS}ms\nthreshold: 2\nminRequests: 3\ninconclusiveLimit: 5\nmetrics: [{ name: error_rate, max: 1 }]\n`,
  );
  for (const name of ['a', 'b']) {
    replicas.push(
      await startFlowgate({
        policyDir: dir,
        mlflowUri: mlflow.uri,
        pollIntervalMs: 500,
        redisUrl: redis.url,
        name: `flowgate-replica-${name}`,
        extraArgs: ['--rollout-tick', '250ms', '--rollout-lease-ttl', `${LEASE_TTL_MS}ms`, '--replica-id', `replica-${name}`, '--no-anomalies'],
      }),
    );
  }
  for (const [i, r] of replicas.entries()) {
    envoys.push(await startEnvoy({ nodeId: `e2e-replica-${i}`, nodeCluster: 'replicas', xdsHost: '127.0.0.1', xdsPort: r.xdsPort }));
  }
  await waitFor('the route', async () => ((await request(url, { method: 'POST', body: '{}' })).status === 200 ? true : undefined), { timeoutMs: 30_000 });
}, 180_000);

afterAll(async () => {
  for (const e of envoys) await e.stop();
  for (const r of replicas) await r.stop();
  await mlflow?.stop();
  await redis?.stop();
  for (const u of upstreams) await u.close();
});

test('one lease holder; the same snapshot at every step on both replicas; the survivor of a killed holder continues', async () => {
  const leases = await waitFor('one lease holder', async () => {
    const ls = await Promise.all(replicas.map(lease));
    return ls.filter((l) => l.held).length === 1 && ls.every((l) => l.holder === ls.find((x) => x.held)?.thisReplica) ? ls : undefined;
  });
  const holderIndex = leases.findIndex((l) => l.held);
  const holder = replicas[holderIndex] as FlowgateProcess;
  const survivor = replicas[1 - holderIndex] as FlowgateProcess;

  // Per replica: weight -> the snapshot versions it published while serving that weight.
  const seen = replicas.map(() => new Map<number, Set<string>>());
  const survivorWeights: number[] = [];
  let holderAlive = true;
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      await Promise.all(
        replicas.map(async (r, i) => {
          if (r === holder && !holderAlive) return;
          const [served, version] = await Promise.all([servedRollout(r.adminUrl, 'ranker'), snapshotVersion(r)]).catch(() => [undefined, undefined] as const);
          if (!served || !version || served.phase !== 'progressing') return;
          const at = seen[i] as Map<number, Set<string>>;
          at.set(served.weight, (at.get(served.weight) ?? new Set()).add(version));
          if (r === survivor && survivorWeights.at(-1) !== served.weight) survivorWeights.push(served.weight);
        }),
      );
      await new Promise((res) => setTimeout(res, 100));
    }
  })();

  // A new connection per request: the kernel spreads connections, not requests, over the two Envoys, and six
  // kept-alive connections all land on one of them about once in 32 runs.
  const load = steadyLoad([url], { concurrency: 6, init: () => ({ method: 'POST', body: '{"x":1}', headers: { 'content-type': 'application/json', connection: 'close' } }) });
  await mlflow.admin.setAlias('ranker', 'challenger', '2');

  // Both replicas at the second step: then the holder dies without a goodbye (no lease release).
  await waitFor('both replicas serving step 2', async () => {
    const both = await Promise.all(replicas.map((r) => servedRollout(r.adminUrl, 'ranker')));
    return both.every((s) => s?.weight === STEPS[1]) ? true : undefined;
  }, { timeoutMs: 30_000 });
  const before = await versionTags(mlflow.uri, 'ranker', '2');
  holderAlive = false;
  holder.process.child.kill('SIGKILL');
  await holder.process.exited;

  await waitFor('the survivor takes the lease', async () => ((await lease(survivor)).held ? true : undefined), { timeoutMs: LEASE_TTL_MS * 4 });
  await waitFor('promoted by the survivor', async () => ((await aliasesOf(mlflow.uri, 'ranker')).champion === '2' ? true : undefined), { timeoutMs: 40_000, describe: () => survivor.process.tail(30) });
  sampling = false;
  await sampler;
  const result = await load.stop();

  // One snapshot per step, the same on both replicas, for every step both served.
  const [a, b] = seen as [Map<number, Set<string>>, Map<number, Set<string>>];
  const shared = [...a.keys()].filter((w) => b.has(w));
  expect(shared).toEqual(expect.arrayContaining([STEPS[0], STEPS[1]]));
  for (const w of shared) expect([...(a.get(w) ?? [])].sort(), `weight ${w}`).toEqual([...(b.get(w) ?? [])].sort());
  for (const w of shared) expect(a.get(w)?.size, `weight ${w}`).toBe(1);

  // The survivor went on from the state in MLflow: steps in order, none skipped, none repeated.
  expect(survivorWeights).toEqual(STEPS);
  const after = await versionTags(mlflow.uri, 'ranker', '2');
  expect(after['flowgate.rollout.phase']).toBe('succeeded');
  expect(Number(after['flowgate.rollout.generation'])).toBeGreaterThan(Number(before['flowgate.rollout.generation']));
  expect(after['flowgate.rollout.started']).toBe(before['flowgate.rollout.started']);
  const events = ((await (await fetch(`${survivor.adminUrl}/api/rollouts/ranker`)).json()) as { events: { decision: string; by: string }[] }).events;
  const decisions = events.filter((e) => e.decision !== 'check');
  expect(decisions.map((e) => e.decision)).toEqual(['start', 'step', 'step', 'step', 'promote']);
  expect(new Set(decisions.map((e) => e.by)).size).toBe(2);
  expect(decisions.at(-1)?.by).toBe((await lease(survivor)).thisReplica);

  // Traffic went through both Envoys, and nothing failed: not the split, not the handover.
  for (const e of envoys) expect((await e.stats('http.public.downstream_rq_completed')).get('http.public.downstream_rq_completed') ?? 0).toBeGreaterThan(10);
  expect(result.sent).toBeGreaterThan(100);
  expect(result.failures).toEqual([]);
}, 120_000);
