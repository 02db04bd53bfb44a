/**
 * bench/llm-cache: what the LLM answer cache saves and costs. Through Envoy + Flowgate's OpenAI API, one
 * deterministic chat request to an OpenAI-compatible stand-in that takes --model-ms to answer: sent with
 * `Cache-Control: no-store` (bypass: the adapter runs, the model answers) and plain (a hit after the first),
 * one request at a time, JSON and streamed. Then the key computation alone (sha256 of the request) and the
 * memory store's get/set, in process.
 *
 * Run: npx tsx bench/llm-cache.ts [--requests 300] [--model-ms 50]
 */
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { cacheKey, MemoryAnswers } from '../filters/llm/cache.js';
import { startEnvoy } from '../test/harness/envoy.js';
import { startFlowgate } from '../test/harness/flowgate.js';
import { startLlmUpstream } from '../test/harness/llm-upstream.js';
import { freePorts } from '../test/harness/ports.js';
import { waitFor } from '../test/harness/process.js';

const { values } = parseArgs({ options: { requests: { type: 'string', default: '300' }, 'model-ms': { type: 'string', default: '50' } } });
const N = Number(values.requests);
const MODEL_MS = Number(values['model-ms']);

const percentile = (sorted: readonly number[], p: number): number => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;

async function timed(url: string, body: string, headers: Record<string, string>): Promise<{ ms: number; cache: string | null }> {
  const start = performance.now();
  const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body });
  await res.arrayBuffer();
  if (res.status !== 200) throw new Error(`status ${res.status}`);
  return { ms: performance.now() - start, cache: res.headers.get('x-flowgate-cache') };
}

async function series(label: string, url: string, body: string, headers: Record<string, string>, expected: string): Promise<void> {
  const times: number[] = [];
  for (let i = 0; i < N; i++) {
    const { ms, cache } = await timed(url, body, headers);
    if (cache !== expected) throw new Error(`${label}: x-flowgate-cache ${cache}, expected ${expected}`);
    times.push(ms);
  }
  times.sort((a, b) => a - b);
  console.log(`${label.padEnd(28)} p50 ${percentile(times, 50).toFixed(2)} ms   p99 ${percentile(times, 99).toFixed(2)} ms`);
}

async function main(): Promise<void> {
  const upstream = await startLlmUpstream({ name: 'bench' });
  upstream.behave({ delayMs: MODEL_MS });
  const [listener, filters] = (await freePorts(2)) as [number, number];
  const dir = mkdtempSync(join(tmpdir(), 'flowgate-bench-llm-cache-'));
  const policyDir = join(dir, 'policy');
  mkdirSync(policyDir);
  writeFileSync(join(policyDir, 'gateway.yaml'), `kind: Gateway\nlisteners: [{ name: llm, address: 127.0.0.1, port: ${listener} }]\nfilterService: { address: 127.0.0.1, port: ${filters}, timeout: 2s }\nopenai: { listener: llm }\n`);
  writeFileSync(join(policyDir, 'models.yaml'), `kind: Model\nname: cached\nupstream: { addressTemplate: "127.0.0.1:${upstream.port}" }\ntraffic: { stable: { version: 1 } }\nllm: { cache: {} }\n`);
  writeFileSync(join(dir, 'registry.json'), JSON.stringify({ models: [{ name: 'cached', versions: [{ version: '1' }] }] }));
  const flowgate = await startFlowgate({ policyDir, registryFile: join(dir, 'registry.json'), filtersPort: filters, name: 'bench-llm-cache' });
  const envoy = await startEnvoy({ nodeId: 'bench-llm-cache', nodeCluster: 'bench', xdsHost: '127.0.0.1', xdsPort: flowgate.xdsPort });
  const url = `http://127.0.0.1:${listener}/v1/chat/completions`;
  const json = JSON.stringify({ model: 'cached', temperature: 0, messages: [{ role: 'user', content: 'a question worth caching' }] });
  const stream = JSON.stringify({ model: 'cached', temperature: 0, stream: true, messages: [{ role: 'user', content: 'a question worth caching' }] });
  try {
    await waitFor('the OpenAI API', async () => ((await timed(url, json, {}).catch(() => undefined)) ? true : undefined));
    console.log(`${N} sequential requests, model answers in ${MODEL_MS} ms`);
    await series('bypass (no-store), JSON', url, json, { 'cache-control': 'no-store' }, 'bypass');
    await series('hit, JSON', url, json, {}, 'hit');
    await series('hit, streamed (SSE replay)', url, stream, {}, 'hit');
  } finally {
    await envoy.stop();
    await flowgate.stop();
    await upstream.close();
  }

  const request = { model: 'cached', temperature: 0, messages: Array.from({ length: 10 }, (_, i) => ({ role: i % 2 ? 'assistant' : 'user', content: `turn ${i} `.repeat(40) })) };
  const rounds = 20_000;
  let start = performance.now();
  for (let i = 0; i < rounds; i++) cacheKey({ model: 'cached', version: '1', endpoint: 'chat', scope: 'consumer', consumer: `c${i % 10}`, request });
  console.log(`cacheKey, 10-turn request (${JSON.stringify(request).length} bytes): ${(((performance.now() - start) / rounds) * 1000).toFixed(1)} µs each`);
  const memory = new MemoryAnswers(1000);
  const body = JSON.stringify({ choices: [{ message: { content: 'x'.repeat(1000) } }] });
  start = performance.now();
  for (let i = 0; i < rounds; i++) {
    memory.set(`k${i % 2000}`, { version: '1', body }, 60_000);
    memory.get(`k${(i * 7) % 2000}`);
  }
  console.log(`memory store set+get at 1000 entries: ${(((performance.now() - start) / rounds) * 1000).toFixed(2)} µs each`);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
