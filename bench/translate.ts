/**
 * Translate benchmark: M models (the side-by-side's fixtures: two live versions each) through the pipeline
 * the way `flowgate serve` runs it (IR, ADS plus proxyless, consistency check, encoding into snapshots;
 * serve builds the gRPC and delta gRPC modes once an Envoy of that mode connects: `--modes ads,grpc,delta-grpc`
 * builds all three, as before that), then one change through the GatewayController until the cache publishes the new snapshot:
 *   - cold: policy + registry -> every snapshot encoded (the first build);
 *   - alias move: one model's `challenger` alias moved -> published snapshot (right after the cold build, and
 *     then another model's: the first change after a cold build also collects that build's garbage);
 *   - policy edit: one model's canary weight changed (a new Policy from the files) -> published snapshot;
 *   - file edit -> published: a real policy directory watched by PolicyWatcher, one model file rewritten in
 *     place, until the cache publishes (detection, read, check, build); --watch-max models at most;
 *   - policy load: the policy files with that one edit parsed and validated (what the watcher does before the
 *     controller; unchanged files are not parsed again).
 * Prints the median and max of --rounds per figure and the load average, and for the builds the CPU time the
 * process spent (user + system; on a loaded machine wall time also counts the wait for a core). Measures,
 * never asserts.
 *
 *   npx tsx bench/translate.ts [--models 1000,10000] [--rounds 5] [--modes ads]
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { PolicyWatcher } from '../src/policy/watch.js';
import { parseArgs } from 'node:util';
import { performance } from 'node:perf_hooks';
import { GatewayController } from '../src/control/controller.js';
import { policyFromFiles, type PolicyFileText } from '../src/policy/load.js';
import type { Policy } from '../src/policy/policy.js';
import { registrySnapshotFrom } from '../src/registry/snapshot.js';
import type { RegisteredModel, RegistrySnapshot } from '../src/registry/types.js';
import type { ConfigSourceMode } from '../src/resources/config-source.js';
import { SnapshotCache } from '../src/xds/cache.js';
import { modelPolicy, registeredModels } from './peers/fixtures.js';

const { values } = parseArgs({
  options: {
    models: { type: 'string', default: '1000,10000' },
    rounds: { type: 'string', default: '5' },
    'watch-max': { type: 'string', default: '2000' },
    // The xDS modes built (comma-separated); default ADS, as `flowgate serve` starts.
    modes: { type: 'string', default: 'ads' },
  },
});
const modes = values.modes.split(',') as ConfigSourceMode[];
const rounds = Number(values.rounds);

const GATEWAY = ['kind: Gateway', 'listeners:', '  - { name: public, address: 0.0.0.0, port: 10000 }', ''].join('\n');

function policyFiles(models: number, edited = -1): PolicyFileText[] {
  const files: PolicyFileText[] = [{ file: 'gateway.yaml', text: GATEWAY }];
  for (let i = 0; i < models; i++) files.push({ file: `model-${i}.yaml`, text: modelPolicy(i, i === edited ? 20 : 10) });
  return files;
}

function loadPolicy(files: readonly PolicyFileText[], dir = '/bench'): Policy {
  const load = policyFromFiles(dir, files);
  if (!load.ok) throw new Error(`bench policy rejected: ${load.issues.map((i) => i.message).join('; ')}`);
  return load.policy;
}

/** The registry after one alias move on `model`, from the previous snapshot (the webhook path: one model re-read and merged). */
function withMove(previous: RegistrySnapshot, model: string, version: string): RegistrySnapshot {
  const m = previous.models.get(model);
  if (!m) throw new Error(`no model ${model}`);
  const moved: RegisteredModel = { ...m, aliases: { ...m.aliases, challenger: version }, versions: m.versions.map((v) => ({ ...v, aliases: [] })) };
  return registrySnapshotFrom([...[...previous.models.values()].filter((x) => x.name !== model), moved]);
}

const stats = (xs: number[], cpu?: number[]): string => {
  const med = (v: number[]): number => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)] ?? NaN;
  const s = [...xs].sort((a, b) => a - b);
  return `median ${med(xs).toFixed(1)} ms, max ${(s.at(-1) ?? NaN).toFixed(1)} ms${cpu ? ` (cpu median ${med(cpu).toFixed(1)} ms)` : ''}`;
};

/** CPU time (user + system) of this process since `from`, in ms. */
const cpuSince = (from: NodeJS.CpuUsage): number => {
  const u = process.cpuUsage(from);
  return (u.user + u.system) / 1000;
};

/** Edits one model file of a watched directory `rounds` times; the time from each write to the cache's publish. */
async function watchedEdits(models: number, registry: RegistrySnapshot): Promise<number[]> {
  const dir = mkdtempSync(join(tmpdir(), 'flowgate-bench-policy-'));
  for (const f of policyFiles(models)) writeFileSync(join(dir, f.file), f.text);
  const cache = new SnapshotCache();
  let published: (() => void) | undefined;
  cache.watch({ group: '*', variant: 'ads' }, () => published?.());
  const controller = new GatewayController({ cache, clusterLingerMs: 0, modes });
  controller.setRegistry(registry);
  const watcher = new PolicyWatcher(dir, { check: controller.checkPolicy, rescanMs: 60_000 });
  watcher.on('policy', (p) => controller.setPolicy(p));
  await watcher.start();
  const out: number[] = [];
  try {
    for (let r = 0; r < rounds; r++) {
      // Quiet first: the leading-edge read is what a lone edit gets.
      await new Promise((res) => setTimeout(res, 300));
      const done = new Promise<void>((res) => (published = res));
      const t = performance.now();
      writeFileSync(join(dir, 'model-1.yaml'), modelPolicy(1, 11 + r));
      // The watcher's own handles do not keep a process alive (a server's do): this one does, until the publish.
      const alive = setInterval(() => undefined, 1000);
      await done;
      clearInterval(alive);
      out.push(performance.now() - t);
    }
  } finally {
    await watcher.stop();
    rmSync(dir, { recursive: true, force: true });
  }
  return out;
}

// Loads the protos and warms the code paths, those of a change too (a few moves and edits on a few hundred
// models, enough to take the incremental paths): the first run of a process is not what a change costs.
{
  const warm = 300;
  const controller = new GatewayController({ cache: new SnapshotCache(), clusterLingerMs: 0, modes });
  controller.setPolicy(loadPolicy(policyFiles(warm), '/warm'));
  let registry = registrySnapshotFrom(registeredModels(warm, false));
  controller.setRegistry(registry);
  for (let i = 0; i < 20; i++) {
    registry = withMove(registry, `model-${i}`, '3');
    controller.setRegistry(registry);
    controller.setPolicy(loadPolicy(policyFiles(warm, i), '/warm'));
  }
}

for (const models of String(values.models).split(',').map(Number)) {
  const files = policyFiles(models);
  const registry = registrySnapshotFrom(registeredModels(models, false));

  const cold: number[] = [];
  const move: number[] = [];
  const edit: number[] = [];
  const again: number[] = [];
  const cpu = { cold: [] as number[], move: [] as number[], again: [] as number[], edit: [] as number[] };
  const load: number[] = [];
  let resources = 0;
  for (let r = 0; r < rounds; r++) {
    // A policy loaded afresh (its own directory name, so no parsed file is reused): new objects for every
    // model, so nothing of an earlier round is reused.
    const dir = `/bench-${models}-${r}`;
    const policy = loadPolicy(files, dir);
    const cache = new SnapshotCache();
    let publishedAt = 0;
    cache.watch({ group: '*', variant: 'ads' }, (s) => {
      publishedAt = performance.now();
      resources = Object.values(s.counts()).reduce((a, b) => a + b, 0);
    });
    const controller = new GatewayController({ cache, clusterLingerMs: 0, modes });
    /** Runs one change and records the time to the publish, wall and CPU. */
    const timed = (what: string, wall: number[], cpuTimes: number[], change: () => void): void => {
      publishedAt = 0;
      const c = process.cpuUsage();
      const t = performance.now();
      change();
      if (publishedAt === 0) throw new Error(`the ${what} published nothing`);
      wall.push(publishedAt - t);
      cpuTimes.push(cpuSince(c));
    };
    timed('cold build', cold, cpu.cold, () => {
      controller.setPolicy(policy);
      controller.setRegistry(registry);
    });
    const moved = withMove(registry, `model-${models >> 1}`, '3');
    timed('alias move', move, cpu.move, () => controller.setRegistry(moved));
    // A second move, of another model: the first change after a cold build also collects that build's garbage.
    const movedAgain = withMove(moved, `model-${(models >> 1) + 1}`, '3');
    timed('second alias move', again, cpu.again, () => controller.setRegistry(movedAgain));

    const t = performance.now();
    const edited = loadPolicy(policyFiles(models, models >> 2), dir);
    load.push(performance.now() - t);
    timed('policy edit', edit, cpu.edit, () => controller.setPolicy(edited));
  }
  const watched: number[] = [];
  if (models <= Number(values['watch-max'])) watched.push(...(await watchedEdits(models, registry)));
  const la = loadavg().map((x) => x.toFixed(2)).join(' ');
  console.log(`models=${models} resources(ads)=${resources} modes=${modes.join(",")} load average ${la}`);
  console.log(`  cold build -> published        ${stats(cold, cpu.cold)}`);
  console.log(`  alias move -> published        ${stats(move, cpu.move)} (the first change after the cold build)`);
  console.log(`  next alias move -> published   ${stats(again, cpu.again)}`);
  console.log(`  policy edit -> published       ${stats(edit, cpu.edit)}`);
  console.log(`  policy files -> Policy (load)  ${stats(load)}`);
  if (watched.length > 0) console.log(`  file edit -> published         ${stats(watched)} (PolicyWatcher on a real directory)`);
}
