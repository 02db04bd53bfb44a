/**
 * Idle memory of `flowgate serve`: the server's RSS with no stream and with N ADS streams connected and
 * synced, at rest, and what it is made of (/proc/PID/smaps_rollup: anonymous pages, i.e. V8 heap and malloc,
 * versus file pages, i.e. the node binary and shared libraries; the V8 heap and external memory from the
 * admin port's /metrics). The streams come from ads-load (bench/peers, grpc-go), which holds nothing per
 * stream, so the figure is the server's alone.
 *
 *   npx tsx bench/idle-memory.ts [--streams 100] [--models 50] [--settle-s 10] [--runs 1] [--flowgate bin/flowgate]
 *
 * `serve --no-filters --registry FILE`, as docs/performance.md section 8 measured it; FLOWGATE_SERVE_NODE_FLAGS
 * is passed through (bin/flowgate's node flags for serve).
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { buildPeers } from './peers/build.js';
import { registryModels, writePolicyDir, writeRegistryFile } from './peers/fixtures.js';
import { cpuSeconds, freePort, nextJson, rssMb, startProc, waitFor, type Proc } from './peers/procs.js';

const { values } = parseArgs({
  options: {
    streams: { type: 'string', default: '100' },
    models: { type: 'string', default: '50' },
    'settle-s': { type: 'string', default: '10' },
    runs: { type: 'string', default: '1' },
    flowgate: { type: 'string', default: join(dirname(fileURLToPath(import.meta.url)), '..', 'bin', 'flowgate') },
  },
});
const streams = Number(values.streams);
const models = Number(values.models);
const settleMs = Number(values['settle-s']) * 1_000;

/** Anonymous and file-backed resident MB of `pid`. */
function smaps(pid: number): { anonMb: number; fileMb: number } {
  const text = readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
  const kb = (field: string): number => Number(new RegExp(`^${field}:\\s+(\\d+)`, 'm').exec(text)?.[1] ?? 0);
  return { anonMb: kb('Anonymous') / 1024, fileMb: (kb('Rss') - kb('Anonymous')) / 1024 };
}

/** nodejs_* gauges of the admin /metrics, in MB. */
async function heapOf(adminPort: number): Promise<string> {
  try {
    const text = await (await fetch(`http://127.0.0.1:${adminPort}/metrics`)).text();
    const gauge = (name: string): string => {
      const m = new RegExp(`^(?:flowgate_process_)?${name}(?:\\{[^}]*\\})? ([0-9.e+]+)`, 'm').exec(text);
      return m ? (Number(m[1]) / 1048576).toFixed(1) : '?';
    };
    return `heap used ${gauge('nodejs_heap_size_used_bytes')} / total ${gauge('nodejs_heap_size_total_bytes')} MB, external ${gauge('nodejs_external_memory_bytes')} MB`;
  } catch {
    return 'heap: /metrics not read';
  }
}

const mb = (n: number): string => n.toFixed(1);

const bins = buildPeers((line) => console.error(line));
const dir = mkdtempSync(join(tmpdir(), 'flowgate-idle-'));
try {
  writePolicyDir(join(dir, 'policy'), models);
  writeRegistryFile(join(dir, 'registry.json'), registryModels(models, false));
  for (let run = 1; run <= Number(values.runs); run++) {
    const [xdsPort, adminPort] = [await freePort(), await freePort()];
    const server = startProc(dir, `flowgate-${run}`, values.flowgate, [
      'serve',
      '--policy',
      join(dir, 'policy'),
      '--registry',
      join(dir, 'registry.json'),
      '--xds-listen',
      `127.0.0.1:${xdsPort}`,
      '--admin-listen',
      `127.0.0.1:${adminPort}`,
      '--no-filters',
    ]);
    let load: Proc | undefined;
    try {
      await waitFor('flowgate serve to be ready', async () => ((await fetch(`http://127.0.0.1:${adminPort}/readyz`).catch(() => undefined))?.ok ? true : undefined), 120_000, () => server.tail());
      await sleep(settleMs);
      const cpuBefore = cpuSeconds(server.pid);
      const none = { rss: rssMb(server.pid), ...smaps(server.pid), heap: await heapOf(adminPort), load: loadavg()[0] as number };
      load = startProc(dir, `ads-load-${run}`, bins.adsLoad, ['--target', `127.0.0.1:${xdsPort}`, '--streams', String(streams), '--quiet', '500ms'], { pipeStdout: true });
      const synced = await nextJson<{ synced: number }>(load, (v) => v.event === 'synced', 10 * 60_000);
      const syncCpu = cpuSeconds(server.pid) - cpuBefore;
      await sleep(settleMs);
      const idle = { rss: rssMb(server.pid), ...smaps(server.pid), heap: await heapOf(adminPort), load: loadavg()[0] as number };
      console.log(
        `run ${run}, ${models} models: no stream: RSS ${mb(none.rss)} MB (anon ${mb(none.anonMb)}, file ${mb(none.fileMb)}; ${none.heap}; load ${none.load.toFixed(2)})\n` +
          `  ${synced.synced}/${streams} streams synced (server CPU ${syncCpu.toFixed(2)} s), idle ${settleMs / 1000} s: RSS ${mb(idle.rss)} MB (anon ${mb(idle.anonMb)}, file ${mb(idle.fileMb)}; ${idle.heap}; load ${idle.load.toFixed(2)})`,
      );
    } finally {
      await load?.stop();
      await server.stop();
    }
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
