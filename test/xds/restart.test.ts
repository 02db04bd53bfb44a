import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { NodeStatus } from '../../src/admin/nodes.js';
import { bootstrapMode } from '../../src/bootstrap/bootstrap.js';
import type { ResourceInput } from '../../src/xds/snapshot.js';
import { startEnvoy, type EnvoyProcess } from '../harness/envoy.js';
import { freePorts } from '../harness/ports.js';
import { startProcess, waitFor, type ManagedProcess } from '../harness/process.js';
import { steadyLoad, upstreamOf } from '../harness/traffic.js';
import { startEchoUpstream, type EchoUpstream } from '../harness/upstreams.js';
import { repoRoot } from '../harness/venv.js';
import { edsCluster, endpoints, httpListener, routeTo, XDS_MODES } from './resources.js';

/**
 * The control plane process is killed (SIGKILL) and started again with the same configuration: Envoy keeps
 * serving throughout, reconnects, and finds the same versions, so nothing is re-sent and nothing in Envoy
 * is rebuilt (no config churn).
 */

const MODES = XDS_MODES;

/** Envoy counters that move whenever it applies a changed listener or cluster. */
const CHURN = [
  'cluster_manager.cluster_added',
  'cluster_manager.cluster_modified',
  'cluster_manager.cluster_removed',
  'listener_manager.listener_added',
  'listener_manager.listener_modified',
  'listener_manager.listener_removed',
  'cluster_manager.cds.update_success',
  'listener_manager.lds.update_success',
];

describe.each(MODES)('control-plane restart with real Envoy: $name', ({ ads, delta }) => {
  const mode = bootstrapMode({ ads, delta });
  let ups: EchoUpstream[] = [];
  let envoy: EnvoyProcess;
  let cp: ManagedProcess | undefined;
  let xdsPort = 0;
  let adminPort = 0;
  let listenerPorts: number[] = [];
  let resourcesFile = '';

  const startControlPlane = async (): Promise<ManagedProcess> => {
    const proc = startProcess(`xds-fixture-${mode}`, process.execPath, [
      '--import',
      'tsx',
      join(repoRoot, 'test/fixtures/xds-server-main.ts'),
      '--port',
      String(xdsPort),
      '--admin-port',
      String(adminPort),
      '--resources',
      resourcesFile,
    ], { cwd: repoRoot, env: { ...process.env, FLOWGATE_LOG_LEVEL: 'debug' } });
    await waitFor('the control plane process', async () => ((await fetch(`http://127.0.0.1:${adminPort}/healthz`)).ok ? true : undefined), {
      describe: () => proc.tail(),
    });
    return proc;
  };

  /** True when every xDS subscription of Envoy is connected, false when none is, else undefined. */
  const connected = async (): Promise<boolean | undefined> => {
    const states = [...(await envoy.stats('control_plane.connected_state')).values()];
    if (states.length > 0 && states.every((v) => v === 1)) return true;
    if (states.length > 0 && states.every((v) => v === 0)) return false;
    return undefined;
  };

  const churn = async (): Promise<Record<string, number>> => {
    const stats = await envoy.stats();
    return Object.fromEntries(CHURN.map((name) => [name, stats.get(name) ?? -1]));
  };

  beforeAll(async () => {
    ups = await Promise.all([startEchoUpstream('u0'), startEchoUpstream('u1')]);
    [xdsPort = 0, adminPort = 0, ...listenerPorts] = await freePorts(4);
    const inputs: ResourceInput[] = [0, 1].flatMap((i) => [
      httpListener(`l${i}`, listenerPorts[i] ?? 0, `r${i}`, mode),
      routeTo(`r${i}`, `c${i}`),
      edsCluster(`c${i}`, mode),
      endpoints(`c${i}`, [ups[i]?.port ?? 0]),
    ]);
    resourcesFile = join(mkdtempSync(join(tmpdir(), 'flowgate-restart-')), 'resources.json');
    writeFileSync(resourcesFile, JSON.stringify(inputs));
    cp = await startControlPlane();
    envoy = await startEnvoy({ nodeId: `restart-${mode}-${delta ? 'delta' : 'sotw'}`, nodeCluster: 'restart', xdsHost: '127.0.0.1', xdsPort, ads, delta });
    for (const i of [0, 1]) {
      await waitFor(`listener l${i}`, async () => ((await upstreamOf(`http://127.0.0.1:${listenerPorts[i]}/`)) === `u${i}` ? true : undefined));
    }
  });

  afterAll(async () => {
    await envoy?.stop();
    await cp?.stop();
    await Promise.all(ups.map((u) => u.close()));
  });

  test('Envoy keeps serving through a kill and restart, reconnects, and sees the same versions', async () => {
    const before = await churn();
    const dumpBefore = JSON.stringify((await envoy.configDump()).configs.slice(1));
    const load = steadyLoad(listenerPorts.map((p) => `http://127.0.0.1:${p}/`));

    cp?.child.kill('SIGKILL');
    await cp?.exited;
    await waitFor('Envoy to notice the control plane is gone', async () => ((await connected()) === false ? true : undefined));
    await new Promise((r) => setTimeout(r, 500));
    cp = await startControlPlane();
    await waitFor('Envoy to reconnect every subscription', async () => ((await connected()) === true ? true : undefined));
    // Every type Envoy subscribes to is known to the new process as held at the version it serves.
    await waitFor('the restarted control plane to see every subscription', async () => {
      const nodes = (await (await fetch(`http://127.0.0.1:${adminPort}/debug/nodes`)).json()) as NodeStatus[];
      const types = nodes.flatMap((n) => n.types);
      return types.length >= 4 && types.every((t) => t.lastAck !== null && t.pending === null) ? types : undefined;
    }, { describe: () => cp?.tail() ?? '' });
    await new Promise((r) => setTimeout(r, 500));
    const result = await load.stop();

    expect(result.sent).toBeGreaterThan(20);
    expect(result.failures).toEqual([]);
    expect(await churn()).toEqual(before);
    expect(JSON.stringify((await envoy.configDump()).configs.slice(1))).toBe(dumpBefore);
    const metrics = await (await fetch(`http://127.0.0.1:${adminPort}/metrics`)).text();
    expect(metrics).not.toMatch(/^flowgate_xds_pushes_total\{/m);
  });
});
