/**
 * Alias moved -> every Envoy ACKed, with MLflow webhooks and with polling only. A real MLflow server (webhooks
 * delivered over HTTPS with a test CA), `flowgate serve` and N real Envoys; each round moves the `champion`
 * alias of one model to the other version through MLflow's REST API and measures the time from the call
 * until every Envoy has ACKed a new route configuration (read from Flowgate's /debug/nodes every 5 ms).
 *
 *   npx tsx bench/webhooks.ts [--envoys 4] [--moves 30] [--poll-moves 10] [--poll-interval 5000]
 *
 * Webhook rounds run with a 60 s poll interval, so no poll can bring a change; poll rounds run with no webhook
 * and --poll-interval, the serve default.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import type { NodeStatus } from '../src/admin/nodes.js';
import { MODEL_EVENTS, MlflowWebhooks } from '../src/registry/mlflow-webhooks.js';
import { TypeUrl } from '../src/resources/types.js';
import { makeCertificates } from '../test/harness/certs.js';
import { startEnvoy, type EnvoyProcess } from '../test/harness/envoy.js';
import { startFlowgate, type FlowgateProcess } from '../test/harness/flowgate.js';
import { startMlflow, type MlflowServer } from '../test/harness/mlflow.js';
import { freePort } from '../test/harness/ports.js';
import { waitFor } from '../test/harness/process.js';
import { startEchoUpstream, type EchoUpstream } from '../test/harness/upstreams.js';

const { values } = parseArgs({
  options: {
    envoys: { type: 'string', default: '4' },
    moves: { type: 'string', default: '30' },
    'poll-moves': { type: 'string', default: '10' },
    'poll-interval': { type: 'string', default: '5000' },
  },
});
const ENVOYS = Number(values.envoys);
const MODEL = 'fraud';

const POLICY = (port: number): string => `kind: Gateway
listeners: [{ name: public, address: 127.0.0.1, port: ${port} }]
---
kind: Model
name: ${MODEL}
upstream: { versionTag: flowgate.address }
traffic:
  stable: { alias: champion }
`;

function percentile(sorted: readonly number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? NaN;
}

async function routeVersions(flowgate: FlowgateProcess): Promise<string[]> {
  const nodes = (await (await fetch(`${flowgate.adminUrl}/debug/nodes`)).json()) as NodeStatus[];
  return nodes.filter((n) => n.node.startsWith('bench-envoy-')).map((n) => n.types.find((t) => t.typeUrl === TypeUrl.RouteConfiguration)?.lastAck?.version ?? '');
}

/** Moves the alias `moves` times; the milliseconds from each move until every Envoy ACKed new routes. */
async function rounds(mlflow: MlflowServer, flowgate: FlowgateProcess, moves: number, timeoutMs: number): Promise<{ total: number[]; mlflowCall: number[] }> {
  const total: number[] = [];
  const mlflowCall: number[] = [];
  let version = 1;
  for (let i = 0; i < moves; i++) {
    const before = new Set(await routeVersions(flowgate));
    version = version === 1 ? 2 : 1;
    const t0 = performance.now();
    await mlflow.admin.setAlias(MODEL, 'champion', String(version));
    mlflowCall.push(performance.now() - t0);
    await waitFor(
      'every Envoy to ACK the moved alias',
      async () => {
        const now = await routeVersions(flowgate);
        return now.length === ENVOYS && now.every((v) => v !== '' && !before.has(v) && v === now[0]) ? true : undefined;
      },
      { intervalMs: 5, timeoutMs },
    );
    total.push(performance.now() - t0);
  }
  return { total, mlflowCall };
}

function report(what: string, r: { total: number[]; mlflowCall: number[] }): string {
  const t = [...r.total].sort((a, b) => a - b);
  const m = [...r.mlflowCall].sort((a, b) => a - b);
  return `| ${what} | ${t.length} | ${percentile(t, 50).toFixed(0)} ms | ${percentile(t, 99).toFixed(0)} ms | ${(t.at(-1) ?? 0).toFixed(0)} ms | ${percentile(m, 50).toFixed(0)} ms |`;
}

const certs = makeCertificates({ webhook: 'IP:127.0.0.1' });
const secret = randomBytes(24).toString('hex');
const dir = mkdtempSync(join(tmpdir(), 'flowgate-bench-webhooks-'));
const secretFile = join(dir, 'secret');
writeFileSync(secretFile, `${secret}\n`, { mode: 0o600 });
const mlflow = await startMlflow({
  name: 'bench-mlflow-webhooks',
  env: { MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS: 'true', MLFLOW_WEBHOOK_CACHE_TTL: '1', MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY: `${randomBytes(32).toString('base64url')}=` },
  trustCa: certs.ca,
});
const upstreams: EchoUpstream[] = [await startEchoUpstream('v1'), await startEchoUpstream('v2')];
const envoys: EnvoyProcess[] = [];
let flowgate: FlowgateProcess | undefined;
const lines: string[] = [];
try {
  await mlflow.admin.createRegisteredModel(MODEL);
  for (const [i, u] of upstreams.entries()) await mlflow.admin.createModelVersion({ name: MODEL, source: `s3://bench/${i + 1}`, tags: { 'flowgate.address': `127.0.0.1:${u.port}` } });
  await mlflow.admin.setAlias(MODEL, 'champion', '1');
  const policyDir = join(dir, 'policy');
  mkdirSync(policyDir);
  writeFileSync(join(policyDir, 'policy.yaml'), POLICY(await freePort()));

  const xdsPort = await freePort();
  const serve = async (webhooks: boolean, pollMs: number): Promise<FlowgateProcess> => {
    const webhookPort = await freePort();
    const leaf = certs.leaf('webhook');
    const extraArgs = webhooks ? ['--webhook-listen', `127.0.0.1:${webhookPort}`, '--webhook-secret-file', secretFile, '--webhook-tls-cert', leaf.cert, '--webhook-tls-key', leaf.key] : [];
    const fg = await startFlowgate({ policyDir, mlflowUri: mlflow.uri, pollIntervalMs: pollMs, xdsPort, extraArgs, env: { FLOWGATE_LOG_LEVEL: 'warn' }, name: `bench-flowgate-${webhooks ? 'webhooks' : 'poll'}` });
    if (webhooks) await new MlflowWebhooks({ trackingUri: mlflow.uri }).register({ name: 'flowgate-bench', url: `https://127.0.0.1:${webhookPort}/webhooks/mlflow`, secret, events: MODEL_EVENTS });
    return fg;
  };
  const connected = async (fg: FlowgateProcess): Promise<void> => {
    await waitFor('every Envoy connected and ACKed', async () => {
      const v = await routeVersions(fg);
      return v.length === ENVOYS && v.every((x) => x !== '') ? true : undefined;
    }, { timeoutMs: 60_000 });
  };

  flowgate = await serve(true, 60_000);
  for (let i = 0; i < ENVOYS; i++) envoys.push(await startEnvoy({ nodeId: `bench-envoy-${i}`, nodeCluster: 'bench', xdsHost: '127.0.0.1', xdsPort }));
  await connected(flowgate);
  lines.push(report(`webhooks (poll every 60 s), ${ENVOYS} Envoys`, await rounds(mlflow, flowgate, Number(values.moves), 30_000)));

  // The same Envoys reconnect to a control plane that only polls (the webhook now points nowhere).
  await flowgate.stop();
  await new MlflowWebhooks({ trackingUri: mlflow.uri }).list().then((all) => Promise.all(all.map((w) => new MlflowWebhooks({ trackingUri: mlflow.uri }).delete(w.id))));
  const pollMs = Number(values['poll-interval']);
  flowgate = await serve(false, pollMs);
  await connected(flowgate);
  lines.push(report(`polling only (every ${pollMs / 1000} s), ${ENVOYS} Envoys`, await rounds(mlflow, flowgate, Number(values['poll-moves']), pollMs * 3)));

  process.stdout.write('\n| delivery | moves | alias moved -> all Envoys ACKed: p50 | p99 | max | of which the MLflow call: p50 |\n|---|---:|---:|---:|---:|---:|\n');
  process.stdout.write(`${lines.join('\n')}\n`);
} finally {
  for (const e of envoys) await e.stop();
  await flowgate?.stop();
  await mlflow.stop();
  await Promise.all(upstreams.map((u) => u.close()));
}
