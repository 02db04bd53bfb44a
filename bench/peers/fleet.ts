/**
 * Fleet simulation: R control-plane replicas (`flowgate serve`, polling one MLflow stub, no shared state
 * between them) with N simulated Envoys each (ads-load, one process per replica). It measures what a fleet
 * sees when a data scientist moves an alias on every model: each replica's trigger -> all of its streams
 * hold the new configuration, the fleet's worst, and whether every replica published the same versions
 * (replicas never talk to each other; identical inputs must give identical snapshots).
 *
 *   npm run bench:fleet -- [--replicas 5] [--streams 1000] [--models 1000] [--poll-interval 1000] [--cluster-linger 0s] [--keep]
 *
 * Not part of `npm test`; it measures, it never asserts a time (it exits 1 when replicas disagree).
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { buildPeers } from './build.js';
import { registryModels } from './fixtures.js';
import { MlflowStub } from './mlflow-stub.js';
import { freePort, machine, nextJson, rssMb, startProc, waitFor, type Proc } from './procs.js';
import { prepareFixture, unixNanos, xdsWorkDir, type Summary } from './xds.js';

const { values } = parseArgs({
  options: {
    replicas: { type: 'string', default: '5' },
    streams: { type: 'string', default: '1000' },
    models: { type: 'string', default: '1000' },
    'poll-interval': { type: 'string', default: '1000' },
    quiet: { type: 'string', default: '1000' },
    // Removed clusters stay served this long after a change (make-before-break); the figure waits for the
    // exact new configuration, so the default 10 s would be measured as well. 0: measure the change alone.
    'cluster-linger': { type: 'string', default: '0s' },
    keep: { type: 'boolean', default: false },
  },
});

const whole = (text: string, what: string): number => {
  const n = Number(text);
  if (!Number.isInteger(n) || n <= 0) throw new Error(`--${what} takes a positive whole number (got ${text})`);
  return n;
};
const replicas = whole(values.replicas, 'replicas');
const streams = whole(values.streams, 'streams');
const models = whole(values.models, 'models');
const pollMs = whole(values['poll-interval'], 'poll-interval');

const repo = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const flowgate = join(repo, 'bin', 'flowgate');
const log = (line: string): void => {
  process.stderr.write(`[fleet] ${line}\n`);
};

interface Replica {
  readonly name: string;
  readonly server: Proc;
  readonly adminPort: number;
  readonly xdsPort: number;
  load?: Proc;
}

interface ChangeReport {
  readonly streamsComplete: number;
  readonly completeMs: Summary;
  readonly firstResponseMs: Summary;
  readonly bytesPerStream: Summary;
}

async function versions(r: Replica): Promise<string> {
  const res = await fetch(`http://127.0.0.1:${r.adminPort}/debug/snapshot`);
  return JSON.stringify(((await res.json()) as { versions: unknown }).versions);
}

const fmt = (ms: number): string => `${Math.round(ms).toLocaleString('en-US')} ms`;

async function main(): Promise<number> {
  if (!existsSync(join(repo, 'dist', 'src', 'cli', 'main.js'))) throw new Error('dist/ is missing: run `npm run build` first (npm run bench:fleet does)');
  const root = mkdtempSync(join(tmpdir(), 'flowgate-fleet-'));
  const workDir = xdsWorkDir(root);
  const bins = buildPeers(log);
  console.log(`machine: ${machine()}`);
  console.log(`fleet: ${replicas} replicas x ${streams} streams, ${models} models, MLflow (stub) polled every ${pollMs} ms`);
  const fixture = prepareFixture({ bins, flowgate, workDir, pollMs, quietMs: Number(values.quiet), log }, models, ['registry']);
  const stub = new MlflowStub(registryModels(models, false));
  const mlflow = await stub.start();
  const fleet: Replica[] = [];
  let agree = true;
  try {
    for (let i = 0; i < replicas; i++) {
      const [xdsPort, adminPort] = [await freePort(), await freePort()];
      const name = `replica-${i}`;
      const server = startProc(workDir, name, flowgate, [
        'serve',
        '--policy',
        fixture.policyDir,
        '--mlflow-uri',
        mlflow,
        '--poll-interval',
        String(pollMs),
        '--xds-listen',
        `127.0.0.1:${xdsPort}`,
        '--admin-listen',
        `127.0.0.1:${adminPort}`,
        '--no-filters',
        '--replica-id',
        name,
        '--cluster-linger',
        values['cluster-linger'],
      ]);
      fleet.push({ name, server, adminPort, xdsPort });
    }
    for (const r of fleet) {
      await waitFor(`${r.name} to be ready`, async () => ((await fetch(`http://127.0.0.1:${r.adminPort}/readyz`)).ok ? true : undefined), 180_000, () => r.server.tail());
    }
    const started = Date.now();
    for (const r of fleet) {
      r.load = startProc(workDir, `ads-load-${r.name}`, bins.adsLoad, ['--target', `127.0.0.1:${r.xdsPort}`, '--streams', String(streams), '--quiet', `${values.quiet}ms`], { pipeStdout: true });
    }
    // Every wait is set up before any line can arrive: a line nobody listens for is gone.
    await Promise.all(
      fleet.map(async (r) => {
        const synced = await nextJson<{ synced: number }>(r.load as Proc, (v) => v.event === 'synced', 20 * 60_000);
        log(`${r.name}: ${synced.synced}/${streams} streams synced`);
      }),
    );
    console.log(`first sync of ${replicas * streams} streams: ${fmt(Date.now() - started)}`);
    const before = await Promise.all(fleet.map(versions));
    const sameBefore = before.every((v) => v === before[0]);
    agree &&= sameBefore;
    console.log(`replicas publish the same versions before the change: ${sameBefore ? 'yes' : 'NO'}`);

    for (const r of fleet) {
      r.load?.child.stdin?.write(`expect ${fixture.renders[1] as string}\n`);
      await nextJson(r.load as Proc, (v) => v.event === 'expecting', 120_000);
      r.load?.child.stdin?.write('arm\n');
      await nextJson(r.load as Proc, (v) => v.event === 'armed', 10_000);
    }
    const at = stub.switchTo(registryModels(models, true));
    const reported = Promise.all(fleet.map((r) => nextJson<ChangeReport>(r.load as Proc, (v) => v.event === 'change', 20 * 60_000)));
    for (const r of fleet) r.load?.child.stdin?.write(`trigger ${unixNanos(at)}\n`);
    const reports = await reported;
    const poll = stub.pollAfterSwitch();
    const after = await Promise.all(fleet.map(versions));
    const sameAfter = after.every((v) => v === after[0]) && after[0] !== before[0];
    agree &&= sameAfter;

    console.log(`\nalias move on every model (trigger = the stub's switch; first poll that saw it: +${poll === undefined ? '?' : fmt(poll - at)})\n`);
    console.log('| replica | streams holding the new config | trigger -> first push | -> all complete p50 | p99 | max | bytes per stream | RSS |');
    console.log('|---|---:|---:|---:|---:|---:|---:|---:|');
    for (const [i, r] of fleet.entries()) {
      const rep = reports[i] as ChangeReport;
      console.log(`| ${r.name} | ${rep.streamsComplete}/${streams} | ${fmt(rep.firstResponseMs.min)} | ${fmt(rep.completeMs.p50)} | ${fmt(rep.completeMs.p99)} | ${fmt(rep.completeMs.max)} | ${Math.round(rep.bytesPerStream.p50).toLocaleString('en-US')} B | ${Math.round(rssMb(r.server.pid))} MB |`);
    }
    const worst = Math.max(...reports.map((rep) => rep.completeMs.max));
    const complete = reports.reduce((n, rep) => n + rep.streamsComplete, 0);
    console.log(`\nfleet: ${complete}/${replicas * streams} streams hold the new config; the last at ${fmt(worst)} after the trigger`);
    console.log(`replicas publish the same versions after the change: ${sameAfter ? 'yes' : 'NO'}`);
  } finally {
    for (const r of fleet) {
      r.load?.child.stdin?.write('quit\n');
      await r.load?.stop();
      await r.server.stop();
    }
    await stub.stop();
    if (values.keep || !agree) log(`logs kept in ${root}`);
    else rmSync(root, { recursive: true, force: true });
  }
  return agree ? 0 : 1;
}

process.exitCode = await main();
