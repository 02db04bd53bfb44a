import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startEnvoy, type EnvoyProcess } from '../harness/envoy.js';
import { runCli, startFlowgate, type CliRun, type FlowgateProcess } from '../harness/flowgate.js';
import { startMlflow, type MlflowServer } from '../harness/mlflow.js';
import { freePort } from '../harness/ports.js';
import { waitFor } from '../harness/process.js';
import { aliasesOf, servedRollout, startModelUpstream, versionTags, type ModelUpstream } from '../harness/rollouts.js';
import { registerSecrets } from '../harness/secrets.js';
import { request, steadyLoad, type HttpAnswer, type LoadResult } from '../harness/traffic.js';

/**
 * Automated progressive rollouts end to end, with one real MLflow, `flowgate serve` polling it every 500ms,
 * one real Envoy and real traffic through it. Four rollouts run at once, one per model, with 3s intervals:
 *   healthy  the canary answers like stable: promoted through every step, champion moved in MLflow
 *   erroring the canary answers 20% 503: rolled back, the measured error rate in the failure tag
 *   slow     the canary answers 1s later than stable: rolled back on relative p99
 *   quiet    minRequests far above the traffic: inconclusive, then paused (not promoted)
 * then manual control through the CLI and MLflow tags, and a new challenger restarting a failed rollout.
 */

const INTERVAL_MS = 3000;
const TOKEN = 'rollout-e2e-admin-token-0123456789';
registerSecrets(TOKEN);

let mlflow: MlflowServer;
let flowgate: FlowgateProcess;
let envoy: EnvoyProcess;
const upstreams: ModelUpstream[] = [];
let listener: number;
let tokenFile: string;
const url = (model: string): string => `http://127.0.0.1:${listener}/models/${model}`;

const MODELS: Record<string, { failPercent?: number; delayMs?: number; rollout: string }> = {
  healthy: {
    rollout: `steps: [20, 50, 80]
threshold: 2
minRequests: 5
inconclusiveLimit: 3
metrics:
  - { name: error_rate, max: 1 }
  - { name: latency_p99, relative: true, max: 3, tolerance: 100ms }`,
  },
  erroring: { failPercent: 20, rollout: 'steps: [20, 50, 80]\nthreshold: 3\nminRequests: 3\ninconclusiveLimit: 2\nmetrics: [{ name: error_rate, max: 5 }]' },
  slow: { delayMs: 1000, rollout: 'steps: [20, 50]\nthreshold: 2\nminRequests: 2\ninconclusiveLimit: 3\nmetrics: [{ name: latency_p99, relative: true, max: 2, tolerance: 50ms }]' },
  quiet: { rollout: 'steps: [20, 50]\nminRequests: 100000' },
};

function policyDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'flowgate-rollout-policy-'));
  writeFileSync(join(dir, 'gateway.yaml'), `kind: Gateway\nlisteners: [{ name: public, address: 127.0.0.1, port: ${listener} }]\n`);
  for (const [name, m] of Object.entries(MODELS)) {
    writeFileSync(
      join(dir, `${name}.yaml`),
      `kind: Model\nname: ${name}\nupstream: { versionTag: flowgate.address }\ntraffic: { stable: { alias: champion } }\n---\nkind: Rollout\nmodel: ${name}\ninterval: ${INTERVAL_MS}ms\n${m.rollout}\n`,
    );
  }
  return dir;
}

async function addVersion(model: string, behaviour: { failPercent?: number; delayMs?: number }): Promise<string> {
  const u = await startModelUpstream(`${model}-${upstreams.length}`, behaviour);
  upstreams.push(u);
  const create = (): ReturnType<typeof mlflow.admin.createModelVersion> =>
    mlflow.admin.createModelVersion({ name: model, source: `s3://models/${model}`, tags: { 'flowgate.address': `127.0.0.1:${u.port}` } });
  // MLflow closes idle keep-alive connections; a request sent at that moment meets a closed socket.
  const v = await create().catch(async (err: unknown) => {
    if ((err as { failure?: string }).failure !== 'unreachable') throw err;
    return create();
  });
  return v.version;
}

/** Every distinct (phase, weight) a control plane served for a model, in order, sampled every 100ms. */
function watchRollout(model: string): { stop(): Promise<string[]> } {
  const seen: string[] = [];
  let running = true;
  const sample = async (): Promise<void> => {
    const r = await servedRollout(flowgate.adminUrl, model).catch(() => undefined);
    const key = r ? `${r.phase}:${r.weight}` : 'none';
    if (seen.at(-1) !== key) seen.push(key);
  };
  const loop = (async () => {
    while (running) {
      await sample();
      await new Promise((res) => setTimeout(res, 100));
    }
  })();
  return {
    stop: async () => {
      running = false;
      await loop;
      // The caller stops once it has seen the final state itself: the timeline ends with what is served now.
      await sample();
      return seen;
    },
  };
}

const cli = (...args: string[]): Promise<CliRun> => runCli(args, { env: { ...process.env, FLOWGATE_ADMIN_URL: flowgate.adminUrl, FLOWGATE_ADMIN_TOKEN: '' } });

/** A model's rollout timeline, as the admin API gives it. */
async function eventsOf(model: string): Promise<{ decision: string; weight: number; check?: { verdict: string } }[]> {
  return ((await (await fetch(`${flowgate.adminUrl}/api/rollouts/${model}`)).json()) as { events: { decision: string; weight: number; check?: { verdict: string } }[] }).events;
}

const fromStable = (a: HttpAnswer): boolean => a.headers.get('x-flowgate-model-version') === '1';

beforeAll(async () => {
  mlflow = await startMlflow();
  listener = await freePort();
  for (const [name, m] of Object.entries(MODELS)) {
    await mlflow.admin.createRegisteredModel(name);
    await addVersion(name, {});
    await addVersion(name, m);
    await mlflow.admin.setAlias(name, 'champion', '1');
  }
  tokenFile = join(mkdtempSync(join(tmpdir(), 'flowgate-token-')), 'admin-token');
  writeFileSync(tokenFile, `${TOKEN}\n`);
  flowgate = await startFlowgate({
    policyDir: policyDir(),
    mlflowUri: mlflow.uri,
    pollIntervalMs: 500,
    name: 'flowgate-rollout',
    extraArgs: ['--rollout-tick', '250ms', '--admin-token-file', tokenFile, '--anomaly-window', '10s', '--anomaly-baseline', '30s'],
  });
  envoy = await startEnvoy({ nodeId: 'e2e-rollout', nodeCluster: 'rollout', xdsHost: '127.0.0.1', xdsPort: flowgate.xdsPort });
  for (const name of Object.keys(MODELS)) {
    await waitFor(`the ${name} route`, async () => ((await request(url(name), { method: 'POST', body: '{}' })).status === 200 ? true : undefined), { timeoutMs: 30_000 });
  }
}, 180_000);

afterAll(async () => {
  await envoy?.stop();
  await flowgate?.stop();
  await mlflow?.stop();
  for (const u of upstreams) await u.close();
});

describe('four rollouts at once, judged on live traffic through Envoy', () => {
  const loads = new Map<string, ReturnType<typeof steadyLoad>>();
  const results = new Map<string, LoadResult>();
  const watches = new Map<string, ReturnType<typeof watchRollout>>();
  let order: Record<string, string[]> = {};

  test('every rollout reaches its outcome', async () => {
    const post = (): RequestInit => ({ method: 'POST', body: '{"x":1}', headers: { 'content-type': 'application/json' } });
    // healthy: every answer must be a 200; the others: every answer from the stable version must be one.
    loads.set('healthy', steadyLoad([url('healthy')], { concurrency: 3, init: post }));
    loads.set('erroring', steadyLoad([url('erroring')], { concurrency: 4, init: post, ok: (a) => a.status === 200 || !fromStable(a) }));
    loads.set('slow', steadyLoad([url('slow')], { concurrency: 4, init: post, ok: (a) => a.status === 200 }));
    loads.set('quiet', steadyLoad([url('quiet')], { concurrency: 1, init: post }));
    for (const name of Object.keys(MODELS)) watches.set(name, watchRollout(name));
    for (const name of Object.keys(MODELS)) await mlflow.admin.setAlias(name, 'challenger', '2');

    // The phase tag is written first (it alone decides the served weight) and the rest of the decision after
    // it: the decision is whole once its event is in the timeline, which the lease holder records last.
    const outcome = async (name: string, decision: string, phase: string): Promise<true | undefined> =>
      (await eventsOf(name)).some((e) => e.decision === decision) && (await servedRollout(flowgate.adminUrl, name))?.phase === phase ? true : undefined;
    await Promise.all([
      // Asked of MLflow twice a second, not ten times: its one worker also takes the rollouts' writes.
      waitFor('healthy promoted: champion moved to version 2', async () => ((await aliasesOf(mlflow.uri, 'healthy')).champion === '2' ? true : undefined), { timeoutMs: 40_000, intervalMs: 500, describe: () => flowgate.process.tail(40) }),
      waitFor('erroring rolled back', () => outcome('erroring', 'rollback', 'failed'), { timeoutMs: 30_000, describe: () => flowgate.process.tail(40) }),
      waitFor('slow rolled back', () => outcome('slow', 'rollback', 'failed'), { timeoutMs: 30_000, describe: () => flowgate.process.tail(40) }),
      waitFor('quiet paused', () => outcome('quiet', 'pause', 'paused'), { timeoutMs: 30_000, describe: () => flowgate.process.tail(40) }),
    ]);
    await waitFor('healthy served as the new stable', async () => ((await servedRollout(flowgate.adminUrl, 'healthy'))?.phase === 'idle' ? true : undefined), { timeoutMs: 10_000 });
    for (const [name, load] of loads) results.set(name, await load.stop());
    order = Object.fromEntries(await Promise.all([...watches].map(async ([name, w]) => [name, await w.stop()] as const)));
  }, 90_000);

  test('healthy: through every step (20, 50, 80, then 100) and promoted, with 0 failed requests', async () => {
    const seen = order.healthy ?? [];
    const weights = seen.filter((k) => k.startsWith('progressing:')).map((k) => Number(k.split(':')[1]));
    expect(weights).toEqual([20, 50, 80]);
    expect(seen.at(-1)).toBe('idle:0');
    // The promotion itself (canary at 100%, then the alias moved) can pass between two samples: the timeline has it.
    const events = await eventsOf('healthy');
    // Inconclusive checks (too little traffic in a window on a loaded machine) are recorded but change nothing.
    expect(events.filter((e) => e.decision !== 'check').map((e) => `${e.decision}:${e.weight}`)).toEqual(['start:20', 'step:50', 'step:80', 'promote:100']);
    const r = results.get('healthy');
    expect(r?.sent).toBeGreaterThan(100);
    expect(r?.failures).toEqual([]);
    const aliases = await aliasesOf(mlflow.uri, 'healthy');
    expect(aliases.champion).toBe('2');
    const canary = await versionTags(mlflow.uri, 'healthy', '2');
    expect(canary['flowgate.rollout.phase']).toBe('succeeded');
    expect(canary['flowgate.rollout.promoted_from']).toBe('1');
    expect((await versionTags(mlflow.uri, 'healthy', '1'))['flowgate.rollout.superseded_by']).toBe('2');
  });

  test('erroring: rolled back within threshold x interval (+ one interval), weight 0, the measured error rate tagged', async () => {
    const tags = await versionTags(mlflow.uri, 'erroring', '2');
    expect(tags['flowgate.rollout.phase']).toBe('failed');
    expect(tags['flowgate.rollout.weight']).toBe('0');
    expect(tags['flowgate.rollout.failed_checks']).toBe('3');
    const started = Date.parse(tags['flowgate.rollout.started'] ?? '');
    const failedAt = Date.parse(tags['flowgate.rollout.updated'] ?? '');
    // A check with too little traffic to judge counts for nothing (Flagger's semantics): on a loaded machine
    // the first window can be one, and it moves the bound by its interval.
    const events = await eventsOf('erroring');
    const inconclusive = events.filter((e) => e.check?.verdict === 'inconclusive').length;
    expect(events.filter((e) => e.check?.verdict === 'fail').length).toBe(3);
    expect(failedAt - started).toBeLessThanOrEqual((3 + 1 + inconclusive) * INTERVAL_MS);
    const measured = Number(/error_rate ([\d.]+)% > 5%/.exec(tags['flowgate.rollout.reason'] ?? '')?.[1]);
    expect(measured).toBeGreaterThan(10);
    expect(measured).toBeLessThan(30);
    const last = JSON.parse(tags['flowgate.rollout.last_check'] ?? '{}') as { verdict?: string; canary?: { requests: number; errors5xx: number } };
    expect(last.verdict).toBe('fail');
    expect(last.canary?.errors5xx).toBeGreaterThan(0);
    const served = await servedRollout(flowgate.adminUrl, 'erroring');
    expect(served?.weight).toBe(0);
    expect(served?.liveCanary).toBeUndefined();
    const r = results.get('erroring');
    expect(r?.sent).toBeGreaterThan(50);
    expect(r?.failures).toEqual([]);
    expect((order.erroring ?? []).filter((k) => k.startsWith('progressing:')).length).toBeGreaterThan(0);
  });

  test('erroring: an anomaly alert was raised while the canary was live', () => {
    const alert = flowgate.logLines().find((l) => l.code === 'anomaly_error_rate' && l.model === 'erroring');
    expect(alert?.msg).toMatch(/version 2: error rate [\d.]+%/);
  });

  test('slow: rolled back on p99 relative to stable', async () => {
    const tags = await versionTags(mlflow.uri, 'slow', '2');
    expect(tags['flowgate.rollout.phase']).toBe('failed');
    expect(tags['flowgate.rollout.reason']).toMatch(/latency_p99 [\d.]+ms > 2 x stable [\d.]+ms/);
    expect((await aliasesOf(mlflow.uri, 'slow')).champion).toBe('1');
    expect(results.get('slow')?.failures).toEqual([]);
  });

  test('quiet: inconclusive checks pause the rollout at its weight; it is not promoted', async () => {
    const tags = await versionTags(mlflow.uri, 'quiet', '2');
    expect(tags['flowgate.rollout.phase']).toBe('paused');
    expect(tags['flowgate.rollout.reason']).toMatch(/inconclusive: .*< minRequests 100000/);
    expect(tags['flowgate.rollout.weight']).toBe('20');
    expect((await aliasesOf(mlflow.uri, 'quiet')).champion).toBe('1');
    expect((await flowgate.metric('flowgate_rollout_checks_total{model="quiet",result="inconclusive"}')) ?? 0).toBeGreaterThanOrEqual(1);
    expect(await flowgate.metric('flowgate_rollout_phase{model="quiet",phase="paused"}')).toBe(1);
    expect(await flowgate.metric('flowgate_rollout_weight{model="quiet",version="2"}')).toBe(20);
  });
});

describe('manual control', () => {
  test('mutating endpoints refuse a missing or wrong token', async () => {
    expect((await fetch(`${flowgate.adminUrl}/api/rollouts/quiet/resume`, { method: 'POST' })).status).toBe(401);
    expect((await fetch(`${flowgate.adminUrl}/api/rollouts/quiet/resume`, { method: 'POST', headers: { authorization: 'Bearer not-the-token-at-all' } })).status).toBe(401);
    const r = await cli('rollout', 'resume', 'quiet');
    expect(r.status).toBe(2);
    expect(r.stderr).toContain('needs the admin token');
  });

  test('flowgate rollout status, then resume and abort through the CLI', async () => {
    const status = await cli('rollout', 'status', 'quiet');
    expect(status.status).toBe(0);
    expect(status.stdout).toMatch(/rollout of quiet: paused/);
    expect(status.stdout).toMatch(/canary v2 at 20%/);
    const resumed = await cli('rollout', 'resume', 'quiet', '--token-file', tokenFile, '--json');
    expect(resumed.status, resumed.stderr).toBe(0);
    expect((JSON.parse(resumed.stdout) as { phase: string }).phase).toMatch(/progressing|paused/);
    const aborted = await cli('rollout', 'abort', 'quiet', '--token-file', tokenFile, '--json');
    expect(aborted.status, aborted.stderr).toBe(0);
    expect((JSON.parse(aborted.stdout) as { phase: string; weight: number }).weight).toBe(0);
  }, 60_000);

  test('a pause written as an MLflow tag by hand is applied like the CLI\'s', async () => {
    const v3 = await addVersion('quiet', {});
    await mlflow.admin.setAlias('quiet', 'challenger', v3);
    await waitFor('the new challenger starts a new rollout', async () => ((await versionTags(mlflow.uri, 'quiet', v3))['flowgate.rollout.phase'] === 'progressing' ? true : undefined), { timeoutMs: 15_000, intervalMs: 250 });
    await mlflow.admin.setModelVersionTag('quiet', v3, 'flowgate.rollout.command', 'pause');
    await waitFor('paused by the tag', async () => {
      const tags = await versionTags(mlflow.uri, 'quiet', v3);
      return tags['flowgate.rollout.phase'] === 'paused' && tags['flowgate.rollout.command'] === undefined ? tags : undefined;
    }, { timeoutMs: 15_000, intervalMs: 250 }).then((tags) => expect(tags['flowgate.rollout.reason']).toBe('paused by an MLflow tag'));
  }, 30_000);

  test('a new challenger after a rollback restarts the analysis from the first step', async () => {
    const v3 = await addVersion('erroring', {});
    await mlflow.admin.setAlias('erroring', 'challenger', v3);
    await waitFor('erroring v3 progressing at 20%', async () => {
      const r = await servedRollout(flowgate.adminUrl, 'erroring');
      return r?.canary === v3 && r.phase === 'progressing' && r.weight === 20 ? true : undefined;
    }, { timeoutMs: 15_000 });
    expect((await versionTags(mlflow.uri, 'erroring', '2'))['flowgate.rollout.phase']).toBe('failed');
  }, 30_000);

  test('/debug/traffic keeps its since-start counts and gives sliding windows on request', async () => {
    const since = (await (await fetch(`${flowgate.adminUrl}/debug/traffic`)).json()) as { models: { model: string; version: string; requests: number }[] };
    const total = since.models.find((m) => m.model === 'erroring' && m.version === '2')?.requests ?? 0;
    expect(total).toBeGreaterThan(0);
    const windowed = (await (await fetch(`${flowgate.adminUrl}/debug/traffic?window=10m`)).json()) as { versions: { model: string; version: string; requests: number; errors5xx: number }[] };
    const w = windowed.versions.find((v) => v.model === 'erroring' && v.version === '2');
    expect(w?.requests).toBe(total);
    expect(w?.errors5xx).toBeGreaterThan(0);
    expect((await fetch(`${flowgate.adminUrl}/debug/traffic?window=soon`)).status).toBe(400);
  });

  test('flowgate status shows the rollouts', async () => {
    const r = await runCli(['status', '--admin', flowgate.adminUrl]);
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/ROLLOUTS \(4\)/);
    expect(r.stdout).toMatch(/slow\s+failed\s+2\s+0%/);
    expect(r.stdout).toMatch(/healthy\s+idle/);
  });
});
