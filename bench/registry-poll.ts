/**
 * Registry polling cost with a large registry: a real MLflow tracking server (the venv's mlflow, SQLite store)
 * holding N registered models, read the way `flowgate serve` reads it each poll: every model (--registry-scope
 * all), or only the models the policy names (the default scope, `name IN (...)` searches in batches of 50),
 * against one read per named model. Also the webhook path: one model re-read and merged into the snapshot.
 * Prints per way: wall time (median and max of --rounds), HTTP requests, response bytes and Flowgate's own CPU.
 *
 *   npx tsx bench/registry-poll.ts [--models 10000] [--named 10,100] [--rounds 5]
 *
 * The store is built once with MLflow's own SQLAlchemy store (bench/fixtures/make_registry.py, about 4 minutes
 * for 10,000 models) and cached in ${FLOWGATE_CACHE_DIR:-~/.cache/flowgate}/bench/.
 */
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, rmSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { MlflowClient } from '../src/registry/mlflow-client.js';
import { registrySnapshotFrom } from '../src/registry/snapshot.js';
import type { RegisteredModel } from '../src/registry/types.js';
import { startMlflow } from '../test/harness/mlflow.js';
import { repoRoot, venvBin } from '../test/harness/venv.js';

const { values } = parseArgs({ options: { models: { type: 'string', default: '10000' }, named: { type: 'string', default: '10,100' }, rounds: { type: 'string', default: '5' } } });
const models = Number(values.models);
const namedCounts = values.named.split(',').map(Number);
const rounds = Number(values.rounds);

/** The cached store of `count` models, built on first use. */
function registryDb(count: number): string {
  const dir = join(process.env.FLOWGATE_CACHE_DIR ?? join(homedir(), '.cache', 'flowgate'), 'bench');
  const db = join(dir, `registry-${count}.db`);
  if (existsSync(db)) return db;
  mkdirSync(dir, { recursive: true });
  // Built on tmpfs when there is one: SQLite's commit per row is what takes the time on a disk.
  const scratch = existsSync('/dev/shm') ? `/dev/shm/flowgate-registry-${process.pid}.db` : `${db}.partial`;
  process.stderr.write(`building an MLflow store of ${count} models (once; cached as ${db})\n`);
  execFileSync(venvBin('python'), [join(repoRoot, 'bench/fixtures/make_registry.py'), scratch, String(count)], { stdio: ['ignore', 'inherit', 'inherit'], env: { ...process.env, MLFLOW_DISABLE_TELEMETRY: 'true' } });
  copyFileSync(scratch, `${db}.partial`);
  rmSync(scratch, { force: true });
  copyFileSync(`${db}.partial`, db);
  rmSync(`${db}.partial`, { force: true });
  return db;
}

// Every MLflow call goes through fetch: counting here sees requests and bytes as the server sent them.
let requests = 0;
let bytes = 0;
const realFetch = globalThis.fetch;
globalThis.fetch = async (input, init) => {
  const res = await realFetch(input, init);
  const body = await res.arrayBuffer();
  requests++;
  bytes += body.byteLength;
  return new Response(body, { status: res.status, statusText: res.statusText, headers: res.headers });
};

interface Row {
  readonly way: string;
  readonly medianMs: number;
  readonly maxMs: number;
  readonly requests: number;
  readonly kib: number;
  readonly cpuMs: number;
}

async function measure(way: string, run: () => Promise<unknown>): Promise<Row> {
  const times: number[] = [];
  let perRun = { requests: 0, bytes: 0, cpu: 0 };
  for (let i = 0; i < rounds; i++) {
    const [r0, b0, c0, t0] = [requests, bytes, process.cpuUsage(), performance.now()];
    await run();
    times.push(performance.now() - t0);
    const cpu = process.cpuUsage(c0);
    perRun = { requests: requests - r0, bytes: bytes - b0, cpu: (cpu.user + cpu.system) / 1000 };
  }
  times.sort((a, b) => a - b);
  return { way, medianMs: times[Math.floor(times.length / 2)] ?? 0, maxMs: times.at(-1) ?? 0, requests: perRun.requests, kib: Math.round(perRun.bytes / 1024), cpuMs: Math.round(perRun.cpu) };
}

const mlflow = await startMlflow({ name: 'bench-mlflow-registry', seedDb: registryDb(models) });
try {
  const client = new MlflowClient({ trackingUri: mlflow.uri, timeoutMs: 120_000 });
  const name = (i: number): string => `model-${String(i).padStart(5, '0')}`;
  // Warm MLflow's caches and Python paths once, so the first measured round is not the cold start.
  await client.fetchSnapshot([name(0)]);
  const rows: Row[] = [];
  let all: RegisteredModel[] = [];
  rows.push(
    await measure(`scope all: every model (${models})`, async () => {
      all = [...(await client.fetchSnapshot()).models.values()];
    }),
  );
  for (const n of namedCounts) {
    // Spread over the registry, as a policy's models would be.
    const names = Array.from({ length: n }, (_, i) => name(Math.floor((i * models) / n)));
    rows.push(await measure(`scope policy: ${n} named, batched`, () => client.fetchSnapshot(names)));
    rows.push(await measure(`scope policy: ${n} named, one read each`, () => Promise.all(names.map((m) => client.fetchModel(m)))));
  }
  const target = name(Math.floor(models / 2));
  rows.push(await measure('webhook: re-read one model', () => client.fetchModel(target)));
  const one = await client.fetchModel(target);
  const merge = (base: RegisteredModel[]) => (): Promise<unknown> =>
    Promise.resolve(registrySnapshotFrom([...base.filter((m) => m.name !== target), ...(one ? [one] : [])]));
  rows.push(await measure(`webhook: merge into a ${models}-model snapshot`, merge(all)));
  rows.push(await measure('webhook: merge into a 10-model snapshot', merge(all.slice(0, 10))));

  process.stdout.write(`\nMLflow ${mlflow.uri}: ${models} registered models, 1 version and 1 alias each; ${rounds} rounds\n\n`);
  process.stdout.write('| way | median | max | HTTP requests | response KiB | Flowgate CPU |\n|---|---:|---:|---:|---:|---:|\n');
  for (const r of rows) process.stdout.write(`| ${r.way} | ${r.medianMs.toFixed(1)} ms | ${r.maxMs.toFixed(1)} ms | ${r.requests} | ${r.kib} | ${r.cpuMs} ms |\n`);
} finally {
  await mlflow.stop();
}
