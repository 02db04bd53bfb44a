/**
 * bench/llm: what the LLM gateway adds to a chat completion. The same zero-delay OpenAI-compatible upstream
 * (the stand-in of test/harness/llm-upstream.ts) is called directly and through Envoy + Flowgate's OpenAI API,
 * for a JSON answer and for a stream (time to the last byte; time to the first byte is printed too), at 1, 16
 * and 64 requests in flight. Two models: `pass` (the router only: the body's model picks the route, the
 * answer passes untouched) and `adapted` (the router plus the LLM adapter in the cluster's upstream filters,
 * which writes each version's model name: what MLflow and provider upstreams pay). Overhead = gateway - direct.
 *
 * `--genai-metrics false` turns Gateway.openai.genAiMetrics off: the routes then read no answer (the figures
 * without the cost of GenAI metrics; with them on, every answer streams through the filter service).
 *
 * Run: npx tsx bench/llm.ts [--requests 600] [--concurrency 1,16,64] [--genai-metrics true|false]
 */
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Agent, request } from 'node:http';
import { startEnvoy } from '../test/harness/envoy.js';
import { startFlowgate } from '../test/harness/flowgate.js';
import { startLlmUpstream } from '../test/harness/llm-upstream.js';
import { freePorts } from '../test/harness/ports.js';
import { waitFor } from '../test/harness/process.js';

const { values } = parseArgs({
  options: { requests: { type: 'string', default: '600' }, concurrency: { type: 'string', default: '1,16,64' }, 'genai-metrics': { type: 'string', default: 'true' } },
});
const GENAI_METRICS = values['genai-metrics'] !== 'false';
const N = Number(values.requests);
const LEVELS = values.concurrency.split(',').map(Number);

interface Timing {
  readonly firstByteMs: number;
  readonly totalMs: number;
}

// Kept-alive connections, as an SDK holds them: the figures are per request, not per connection.
const agent = new Agent({ keepAlive: true, maxSockets: 128 });

function once(url: string, body: string): Promise<Timing> {
  return new Promise((resolve, reject) => {
    const start = performance.now();
    let first = 0;
    const req = request(url, { method: 'POST', agent, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } }, (res) => {
      res.on('data', (chunk: Buffer) => {
        if (first === 0 && chunk.length > 0) first = performance.now();
      });
      res.on('end', () => {
        const end = performance.now();
        if (res.statusCode !== 200) reject(new Error(`${url}: HTTP ${res.statusCode ?? 0}`));
        else resolve({ firstByteMs: (first || end) - start, totalMs: end - start });
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** `n` requests, `concurrency` in flight; after a warm-up of 50. */
async function run(url: string, body: string, concurrency: number, n: number): Promise<Timing[]> {
  for (let i = 0; i < 50; i++) await once(url, body);
  const out: Timing[] = [];
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < n) {
      next++;
      out.push(await once(url, body));
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return out;
}

function quantile(values: readonly number[], q: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? NaN;
}

const ms = (v: number): string => v.toFixed(2);

async function main(): Promise<void> {
  const upstream = await startLlmUpstream({ name: 'bench' });
  const [listener, filters] = (await freePorts(2)) as [number, number];
  const dir = mkdtempSync(join(tmpdir(), 'flowgate-bench-llm-'));
  const policyDir = join(dir, 'policy');
  mkdirSync(policyDir);
  writeFileSync(
    join(policyDir, 'p.yaml'),
    `kind: Gateway
listeners: [{ name: llm, address: 127.0.0.1, port: ${listener} }]
filterService: { address: 127.0.0.1, port: ${filters}, timeout: 2s }
openai: { listener: llm, genAiMetrics: ${String(GENAI_METRICS)} }
---
kind: Model
name: pass
upstream: { addressTemplate: "127.0.0.1:${upstream.port}" }
traffic: { stable: { version: 1 } }
llm: {}
---
kind: Model
name: adapted
upstream: { addressTemplate: "127.0.0.1:${upstream.port}" }
traffic: { stable: { version: 1 } }
llm: { modelNameOverride: { versionTag: model } }
`,
  );
  writeFileSync(join(dir, 'registry.json'), JSON.stringify({ models: [{ name: 'pass', versions: [{ version: '1' }] }, { name: 'adapted', versions: [{ version: '1', tags: { model: 'bench-model' } }] }] }));
  const flowgate = await startFlowgate({ policyDir, registryFile: join(dir, 'registry.json'), filtersPort: filters, name: 'bench-llm', env: { FLOWGATE_LOG_LEVEL: 'warn' } });
  const envoy = await startEnvoy({ nodeId: 'bench-llm', nodeCluster: 'bench', xdsHost: '127.0.0.1', xdsPort: flowgate.xdsPort, logLevel: 'warn' });
  const gateway = `http://127.0.0.1:${listener}/v1/chat/completions`;
  const direct = `${upstream.url}/v1/chat/completions`;
  const body = (model: string, stream: boolean): string => JSON.stringify({ model, stream, messages: [{ role: 'user', content: 'a short question of eight words here' }] });
  await waitFor('the gateway', async () => ((await once(gateway, body('pass', false)).catch(() => undefined)) ? true : undefined), { timeoutMs: 60_000 });

  process.stdout.write(`bench/llm: ${N} requests per cell; GenAI metrics ${GENAI_METRICS ? 'on' : 'off'}; latency in ms (p50 / p99); overhead = gateway - direct\n\n`);
  process.stdout.write('| answer | model | in flight | direct p50 | direct p99 | gateway p50 | gateway p99 | overhead p50 | overhead p99 | gateway first byte p50 |\n');
  process.stdout.write('|---|---|--:|--:|--:|--:|--:|--:|--:|--:|\n');
  for (const stream of [false, true]) {
    for (const model of ['pass', 'adapted']) {
      for (const c of LEVELS) {
        upstream.clear();
        const d = await run(direct, body(model, stream), c, N);
        const g = await run(gateway, body(model, stream), c, N);
        const dp = [quantile(d.map((t) => t.totalMs), 0.5), quantile(d.map((t) => t.totalMs), 0.99)] as const;
        const gp = [quantile(g.map((t) => t.totalMs), 0.5), quantile(g.map((t) => t.totalMs), 0.99)] as const;
        process.stdout.write(
          `| ${stream ? 'stream' : 'JSON'} | ${model} | ${c} | ${ms(dp[0])} | ${ms(dp[1])} | ${ms(gp[0])} | ${ms(gp[1])} | ${ms(gp[0] - dp[0])} | ${ms(gp[1] - dp[1])} | ${ms(quantile(g.map((t) => t.firstByteMs), 0.5))} |\n`,
        );
      }
    }
  }
  await envoy.stop();
  await flowgate.stop();
  await upstream.close();
  agent.destroy();
}

main().catch((err: unknown) => {
  process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
