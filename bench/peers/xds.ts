import { execFileSync } from 'node:child_process';
import { cpSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { PeerBinaries } from './build.js';
import { policyEdit, registryModels, writePolicyDir, writeRegistryFile } from './fixtures.js';
import { MlflowStub, wallClockMs } from './mlflow-stub.js';
import { cpuSeconds, freePort, nextJson, peakRssMb, resetPeakRss, rssMb, sampleRss, startProc, waitFor, type Proc } from './procs.js';

/**
 * One xDS row: a server (go-control-plane or Flowgate) holding M models, N ADS streams from ads-load,
 * the initial sync, then each change in turn (an alias move on every model in the registry, an edit of
 * one policy file), each measured from its trigger to the streams' first response and last ACK.
 */

export type ChangeKind = 'registry' | 'policy';
export type Side = 'go-control-plane' | 'flowgate';

export interface Summary {
  readonly n: number;
  readonly min: number;
  readonly p50: number;
  readonly p99: number;
  readonly max: number;
  readonly mean: number;
}

export interface Digest {
  readonly resources: number;
  readonly bytes: number;
  readonly sha256: string;
  readonly canonicalSha256: string;
}

export interface ChangeResult {
  readonly kind: ChangeKind;
  readonly streamsUpdated: number;
  readonly firstResponseMs: Summary;
  /** Each stream's last ACK before the report. */
  readonly allAckedMs: Summary;
  /** When each stream held exactly the expected configuration (its ACK of the last response needed). */
  readonly completeMs: Summary;
  readonly streamsComplete: number;
  readonly fanOutMs: number | undefined;
  /** Flowgate with the MLflow stub: from the first poll that saw the change to the first response. */
  readonly pollToFirstResponseMs: number | undefined;
  readonly bytesPerStream: Summary;
  readonly responsesByType: Readonly<Record<string, number>>;
  readonly rssBeforeMb: number;
  readonly rssPeakMb: number;
  readonly cpuSeconds: number;
  /** The client's CPU over the same window: it shares the two cores with the server. */
  readonly clientCpuSeconds: number;
}

export interface SideResult {
  readonly side: Side;
  readonly streams: number;
  readonly models: number;
  readonly resources: number;
  readonly rssNoStreamsMb: number;
  readonly rssSyncedMb: number;
  readonly sync: { readonly synced: number; readonly wallMs: number; readonly perStreamMs: Summary; readonly bytesPerStream: Summary };
  readonly digests: Readonly<Record<string, Digest>>;
  readonly changes: readonly ChangeResult[];
  readonly streamErrors: number;
}

export interface XdsContext {
  readonly bins: PeerBinaries;
  /** bin/flowgate of the repository (built dist). */
  readonly flowgate: string;
  readonly workDir: string;
  readonly pollMs: number;
  readonly quietMs: number;
  readonly log: (line: string) => void;
}

interface Fixture {
  readonly models: number;
  readonly policyDir: string;
  readonly registries: { readonly before: string; readonly after: string };
  /** Rendered configurations: the initial one, then one after each change of `changes`. */
  readonly renders: readonly string[];
  readonly resources: number;
}

/** Writes the policy and registries for `models` models and renders every state the changes go through. */
export function prepareFixture(ctx: XdsContext, models: number, changes: readonly ChangeKind[]): Fixture {
  const dir = join(ctx.workDir, `models-${models}`);
  const policyDir = join(dir, 'policy');
  writePolicyDir(policyDir, models);
  const before = join(dir, 'registry-before.json');
  const after = join(dir, 'registry-after.json');
  writeRegistryFile(before, registryModels(models, false));
  writeRegistryFile(after, registryModels(models, true));
  const editedDir = join(dir, 'policy-edited');
  cpSync(policyDir, editedDir, { recursive: true });
  const edit = policyEdit(editedDir);
  writeFileSync(edit.file, edit.text);

  let policy = policyDir;
  let registry = before;
  const renders: string[] = [];
  const render = (): void => {
    const out = join(dir, `render-${renders.length}.json`);
    writeFileSync(out, execFileSync(ctx.flowgate, ['render', '--policy', policy, '--registry', registry], { maxBuffer: 1 << 30 }));
    renders.push(out);
  };
  render();
  for (const change of changes) {
    if (change === 'registry') registry = after;
    else policy = editedDir;
    render();
  }
  const first = JSON.parse(readFileSync(renders[0] as string, 'utf8')) as Record<string, unknown[] | undefined>;
  const resources = ['clusters', 'endpoints', 'listeners', 'routes'].reduce((n, k) => n + (first[k]?.length ?? 0), 0);
  return { models, policyDir, registries: { before, after }, renders, resources };
}

interface RunningServer {
  readonly proc: Proc;
  readonly xdsPort: number;
  /** Causes the next change and returns its wall-clock time (ms). */
  trigger(kind: ChangeKind): Promise<number>;
  pollAfterTrigger(): number | undefined;
  stop(): Promise<void>;
}

async function startGoPeer(ctx: XdsContext, fixture: Fixture, tag: string): Promise<RunningServer> {
  const args = ['--resources', fixture.renders[0] as string, ...fixture.renders.slice(1).flatMap((f) => ['--next', f])];
  const proc = startProc(ctx.workDir, `xds-peer-${tag}`, ctx.bins.xdsPeer, args, { pipeStdout: true });
  const ready = await nextJson<{ xdsPort: number }>(proc, (v) => typeof v.xdsPort === 'number', 120_000);
  return {
    proc,
    xdsPort: ready.xdsPort,
    // A signal, not an HTTP call: no connection set-up lands inside the measured time.
    trigger: () => {
      const at = wallClockMs();
      proc.child.kill('SIGHUP');
      return Promise.resolve(at);
    },
    pollAfterTrigger: () => undefined,
    stop: () => proc.stop(),
  };
}

async function startFlowgate(ctx: XdsContext, fixture: Fixture, changes: readonly ChangeKind[], tag: string): Promise<RunningServer> {
  // A private copy of the policy: the policy change edits it.
  const policyDir = join(ctx.workDir, `policy-${tag}`);
  cpSync(fixture.policyDir, policyDir, { recursive: true });
  const stub = changes.includes('registry') ? new MlflowStub(registryModels(fixture.models, false)) : undefined;
  const registryArgs = stub ? ['--mlflow-uri', await stub.start(), '--poll-interval', String(ctx.pollMs)] : ['--registry', fixture.registries.before];
  const [xdsPort, adminPort] = [await freePort(), await freePort()];
  const proc = startProc(ctx.workDir, `flowgate-${tag}`, ctx.flowgate, [
    'serve',
    '--policy',
    policyDir,
    ...registryArgs,
    '--xds-listen',
    `127.0.0.1:${xdsPort}`,
    '--admin-listen',
    `127.0.0.1:${adminPort}`,
    '--no-filters',
    // Removed clusters go at once, as go-control-plane's do: "complete" is then the exact new configuration
    // (the default 10 s linger would put the second CDS/EDS push 10 s after the change).
    '--cluster-linger',
    '0s',
  ]);
  await waitFor('flowgate serve to be ready', async () => ((await fetch(`http://127.0.0.1:${adminPort}/readyz`)).ok ? true : undefined), 120_000, () => proc.tail());
  return {
    proc,
    xdsPort,
    trigger: (kind) => {
      if (kind === 'registry') {
        if (!stub) throw new Error('registry change without the MLflow stub');
        return Promise.resolve(stub.switchTo(registryModels(fixture.models, true)));
      }
      const edit = policyEdit(policyDir);
      const at = wallClockMs();
      writeFileSync(edit.file, edit.text);
      return Promise.resolve(at);
    },
    pollAfterTrigger: () => stub?.pollAfterSwitch(),
    stop: async () => {
      await proc.stop();
      await stub?.stop();
    },
  };
}

/** Wall-clock ms as the integer nanoseconds ads-load reads (a double cannot hold them exactly). */
export function unixNanos(ms: number): string {
  const whole = Math.floor(ms);
  return (BigInt(whole) * 1_000_000n + BigInt(Math.round((ms - whole) * 1e6))).toString();
}

/** Runs one side of one row: start the server, sync N streams, make every change, stop. */
export async function runSide(ctx: XdsContext, side: Side, fixture: Fixture, streams: number, changes: readonly ChangeKind[]): Promise<SideResult> {
  const tag = `${side}-m${fixture.models}-n${streams}`;
  ctx.log(`xds ${tag}: starting`);
  const server = side === 'flowgate' ? await startFlowgate(ctx, fixture, changes, tag) : await startGoPeer(ctx, fixture, tag);
  const pid = server.proc.pid;
  let load: Proc | undefined;
  try {
    const rssNoStreamsMb = rssMb(pid);
    load = startProc(ctx.workDir, `ads-load-${tag}`, ctx.bins.adsLoad, ['--target', `127.0.0.1:${server.xdsPort}`, '--streams', String(streams), '--quiet', `${ctx.quietMs}ms`], {
      pipeStdout: true,
    });
    const synced = await nextJson<SideResult['sync'] & { resources: Record<string, Digest>; streamErrors: number }>(load, (v) => v.event === 'synced', 15 * 60_000);
    ctx.log(`xds ${tag}: ${synced.synced}/${streams} streams synced in ${Math.round(synced.wallMs)} ms`);
    const rssSyncedMb = rssMb(pid);
    const results: ChangeResult[] = [];
    for (const [i, kind] of changes.entries()) {
      load.child.stdin?.write(`expect ${fixture.renders[i + 1] as string}\n`);
      await nextJson(load, (v) => v.event === 'expecting', 120_000);
      load.child.stdin?.write('arm\n');
      await nextJson(load, (v) => v.event === 'armed', 10_000);
      const rssBeforeMb = rssMb(pid);
      const hwm = resetPeakRss(pid);
      const sampler = sampleRss(pid);
      const cpuBefore = cpuSeconds(pid);
      const clientCpuBefore = cpuSeconds(load.pid);
      const at = await server.trigger(kind);
      load.child.stdin?.write(`trigger ${unixNanos(at)}\n`);
      const report = await nextJson<Omit<ChangeResult, 'kind' | 'pollToFirstResponseMs' | 'rssBeforeMb' | 'rssPeakMb' | 'cpuSeconds' | 'clientCpuSeconds'>>(load, (v) => v.event === 'change', 15 * 60_000);
      const cpu = cpuSeconds(pid) - cpuBefore;
      const clientCpu = cpuSeconds(load.pid) - clientCpuBefore;
      const rssPeakMb = Math.max(sampler.stop(), hwm ? peakRssMb(pid) : 0);
      const poll = server.pollAfterTrigger();
      results.push({
        kind,
        streamsUpdated: report.streamsUpdated,
        firstResponseMs: report.firstResponseMs,
        allAckedMs: report.allAckedMs,
        completeMs: report.completeMs,
        streamsComplete: report.streamsComplete,
        fanOutMs: report.fanOutMs,
        pollToFirstResponseMs: poll === undefined ? undefined : report.firstResponseMs.min - (poll - at),
        bytesPerStream: report.bytesPerStream,
        responsesByType: report.responsesByType,
        rssBeforeMb,
        rssPeakMb,
        cpuSeconds: cpu,
        clientCpuSeconds: clientCpu,
      });
      ctx.log(`xds ${tag}: ${kind} change complete on ${report.streamsComplete}/${streams} streams, p99 ${Math.round(report.completeMs.p99)} ms`);
    }
    load.child.stdin?.write('quit\n');
    await load.exited;
    return {
      side,
      streams,
      models: fixture.models,
      resources: fixture.resources,
      rssNoStreamsMb,
      rssSyncedMb,
      sync: { synced: synced.synced, wallMs: synced.wallMs, perStreamMs: synced.perStreamMs, bytesPerStream: synced.bytesPerStream },
      digests: synced.resources,
      changes: results,
      streamErrors: synced.streamErrors,
    };
  } finally {
    await load?.stop();
    await server.stop();
  }
}

/** Creates the working directory of one run. */
export function xdsWorkDir(root: string): string {
  const dir = join(root, 'xds');
  mkdirSync(dir, { recursive: true });
  return dir;
}
