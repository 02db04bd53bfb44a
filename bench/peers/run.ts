/**
 * Flowgate side by side with the Go references, on this machine, with one neutral client for both sides:
 *   xDS:        ads-load (grpc-go) against go-control-plane v0.14 (xds-peer) and `flowgate serve`,
 *               both serving the resources `flowgate render` prints for the same policy and registry;
 *   rate limit: ghz against envoyproxy/ratelimit and `flowgate filters`, one Redis, same descriptors.
 *
 *   npm run bench:peers -- [--only xds|ratelimit] [--streams 100,1000] [--models 50] [--changes registry,policy]
 *                          [--in-flight 16,64] [--seconds 10] [--json FILE] [--keep]
 *
 * Not part of `npm test`. Go binaries are built into ~/.cache/flowgate/peers/ (see build.ts).
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { buildPeers } from './build.js';
import { accepts, freePort, machine, startProc, waitFor, type Proc } from './procs.js';
import { runRateLimitSide, type RateLimitRow, type RateLimitSide } from './ratelimit.js';
import { rateLimitTable, xdsTable } from './table.js';
import { prepareFixture, runSide, xdsWorkDir, type ChangeKind, type Side, type SideResult } from './xds.js';

const { values } = parseArgs({
  options: {
    only: { type: 'string' },
    streams: { type: 'string', default: '100,1000' },
    models: { type: 'string', default: '50' },
    changes: { type: 'string', default: 'registry,policy' },
    'poll-interval': { type: 'string', default: '1000' },
    quiet: { type: 'string', default: '1000' },
    'in-flight': { type: 'string', default: '16,64' },
    seconds: { type: 'string', default: '10' },
    consumers: { type: 'string', default: '1000' },
    connections: { type: 'string', default: '2' },
    algorithm: { type: 'string' },
    'flowgate-args': { type: 'string', default: '' },
    redis: { type: 'string' },
    json: { type: 'string' },
    keep: { type: 'boolean', default: false },
  },
});

const numbers = (text: string, what: string): number[] => {
  const list = text.split(',').map((s) => Number(s.trim()));
  if (list.length === 0 || list.some((n) => !Number.isInteger(n) || n <= 0)) throw new Error(`--${what} takes positive whole numbers, comma-separated (got ${text})`);
  return list;
};
const only = values.only;
if (only !== undefined && only !== 'xds' && only !== 'ratelimit') throw new Error('--only is xds or ratelimit');
const changes = values.changes.split(',').map((c) => c.trim()) as ChangeKind[];
if (changes.some((c) => c !== 'registry' && c !== 'policy')) throw new Error('--changes takes registry and/or policy');

const algorithm = values.algorithm as 'fixed' | 'sliding' | undefined;
if (algorithm !== undefined && !['fixed', 'sliding'].includes(algorithm)) throw new Error('--algorithm is fixed or sliding');
const repo = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const flowgate = join(repo, 'bin', 'flowgate');
const log = (line: string): void => {
  process.stderr.write(`[peers] ${line}\n`);
};

async function startRedis(dir: string): Promise<{ url: string; proc: Proc }> {
  const port = await freePort();
  const proc = startProc(dir, 'redis', 'redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no']);
  await waitFor('redis-server', async () => ((await accepts(port)) ? true : undefined), 15_000, () => proc.tail());
  return { url: `redis://127.0.0.1:${port}`, proc };
}

async function main(): Promise<void> {
  if (!existsSync(join(repo, 'dist', 'src', 'cli', 'main.js'))) throw new Error('dist/ is missing: run `npm run build` first (npm run bench:peers does)');
  const workDir = mkdtempSync(join(tmpdir(), 'flowgate-peers-'));
  let failed = false;
  const bins = buildPeers(log);
  const header = [`machine: ${machine()}`, `go: ${bins.goVersion}; peers built in ${bins.dir}`, `work dir: ${workDir}`];
  for (const line of header) console.log(line);
  const report: { machine: string; xds: SideResult[]; ratelimit: RateLimitRow[] } = { machine: machine(), xds: [], ratelimit: [] };
  try {
    if (only === undefined || only === 'xds') {
      const ctx = { bins, flowgate, workDir: xdsWorkDir(workDir), pollMs: Number(values['poll-interval']), quietMs: Number(values.quiet), log };
      for (const models of numbers(values.models, 'models')) {
        const fixture = prepareFixture(ctx, models, changes);
        const results: SideResult[] = [];
        for (const streams of numbers(values.streams, 'streams')) {
          for (const side of ['go-control-plane', 'flowgate'] as const satisfies readonly Side[]) {
            results.push(await runSide(ctx, side, fixture, streams, changes));
          }
        }
        report.xds.push(...results);
        console.log(`\n### xDS: ${models} models (${fixture.resources} resources), Flowgate polling MLflow (stub) every ${ctx.pollMs} ms\n`);
        console.log(xdsTable(results, changes));
      }
    }
    if (only === undefined || only === 'ratelimit') {
      const redis = values.redis === undefined ? await startRedis(workDir) : undefined;
      try {
        const ctx = {
          bins,
          flowgate,
          workDir: join(workDir, 'ratelimit'),
          redisUrl: values.redis ?? (redis as { url: string }).url,
          consumers: Number(values.consumers),
          limit: { requests: 1_000_000, per: 'hour' as const, algorithm },
          connections: Number(values.connections),
          log,
        };
        const seconds = Number(values.seconds);
        const inFlights = numbers(values['in-flight'], 'in-flight');
        const rows: RateLimitRow[] = [];
        rows.push(...(await runRateLimitSide(ctx, 'envoyproxy/ratelimit' satisfies RateLimitSide, inFlights, seconds)));
        // `--flowgate-args='A|B'`: one Flowgate column per variant, in this run, against the same reference.
        for (const variant of values['flowgate-args'].split('|')) {
          const flowgateArgs = variant.split(' ').filter((a) => a !== '');
          rows.push(...(await runRateLimitSide({ ...ctx, flowgateArgs }, 'flowgate', inFlights, seconds)));
        }
        report.ratelimit = rows;
        console.log(`\n### Rate limit: ShouldRateLimit, ${ctx.consumers} consumers (1,000,000 per hour each), one Redis, ${seconds} s per column, ghz over ${ctx.connections} connections\n`);
        console.log(rateLimitTable(rows));
      } finally {
        await redis?.proc.stop();
      }
    }
    if (values.json) writeFileSync(values.json, `${JSON.stringify(report, null, 2)}\n`);
  } catch (err) {
    failed = true;
    throw err;
  } finally {
    if (values.keep || failed) log(`logs kept in ${workDir}`);
    else rmSync(workDir, { recursive: true, force: true });
  }
}

try {
  execFileSync('redis-server', ['--version'], { stdio: 'ignore' });
} catch {
  if (only !== 'xds') throw new Error('redis-server is not on PATH (scripts/setup.sh installs it)');
}
await main();
