import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test, vi } from 'vitest';
import { nodeStatuses } from '../../src/admin/nodes.js';
import { AdminServer } from '../../src/observability/admin-server.js';
import { resolveOptions } from '../../src/cli/command.js';
import { statusCommand } from '../../src/cli/commands/status.js';
import { buildGatewayIR } from '../../src/ir/build.js';
import type { GatewayIR } from '../../src/ir/types.js';
import { loadPolicyDir } from '../../src/policy/load.js';
import { loadRegistryFile } from '../../src/registry/file.js';
import type { FleetStatus } from '../../src/status/report.js';
import { TypeUrl } from '../../src/resources/types.js';
import { Snapshot, type ResourceInput } from '../../src/xds/snapshot.js';
import { startEnvoy, type EnvoyProcess } from '../harness/envoy.js';
import { freePort } from '../harness/ports.js';
import { waitFor } from '../harness/process.js';
import { upstreamOf } from '../harness/traffic.js';
import { startEchoUpstream, type EchoUpstream } from '../harness/upstreams.js';
import { repoRoot } from '../harness/venv.js';
import { startXdsServer, type TestXdsServer } from '../harness/xds-server.js';
import { edsCluster, endpoints, httpListener, routeTo } from '../xds/resources.js';

/**
 * `flowgate status` against an admin endpoint serving the real thing: /debug/nodes from an xDS server with a
 * real Envoy connected (one route configuration rejected), /debug/ir built from the quickstart policy and
 * registry.
 */

async function runStatus(argv: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const out = vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
    stdout += String(chunk);
    return true;
  });
  const err = vi.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => {
    stderr += String(chunk);
    return true;
  });
  try {
    const { values, positionals } = resolveOptions(statusCommand, argv, env);
    const code = await statusCommand.run(values, positionals);
    return { code, stdout, stderr };
  } finally {
    out.mockRestore();
    err.mockRestore();
  }
}

function badRoute(name: string, cluster: string): ResourceInput {
  return {
    typeUrl: TypeUrl.RouteConfiguration,
    name,
    message: { name, virtual_hosts: [{ name: 'all', domains: ['*'], routes: [{ match: { safe_regex: { regex: '/broken(' } }, route: { cluster } }] }] },
  };
}

describe('flowgate status', () => {
  let cp: TestXdsServer;
  let envoy: EnvoyProcess;
  let u0: EchoUpstream;
  let admin: AdminServer;
  let adminUrl = '';
  let good: Snapshot;
  let ir: GatewayIR;

  beforeAll(async () => {
    const load = await loadPolicyDir(join(repoRoot, 'examples', 'quickstart', 'policy'));
    if (!load.ok) throw new Error('the quickstart policy does not load');
    ir = buildGatewayIR(load.policy, await loadRegistryFile(join(repoRoot, 'examples', 'quickstart', 'registry.json'))).ir;

    u0 = await startEchoUpstream('u0');
    const port = await freePort();
    cp = await startXdsServer();
    const snapshot = (route: ResourceInput) => Snapshot.from([httpListener('l0', port, 'r0', 'ads'), route, edsCluster('c0', 'ads'), endpoints('c0', [u0.port])]);
    good = snapshot(routeTo('r0', 'c0'));
    cp.cache.setSnapshot('*', good);
    envoy = await startEnvoy({ nodeId: 'status-edge-1', nodeCluster: 'edge', xdsHost: '127.0.0.1', xdsPort: cp.port });
    await waitFor('Envoy to route', async () => ((await upstreamOf(`http://127.0.0.1:${port}/`)) === 'u0' ? true : undefined));
    cp.cache.setSnapshot('*', snapshot(badRoute('r0', 'c0')));
    await waitFor('the RDS NACK', () => (nodeStatuses(cp.xds).some((n) => n.types.some((t) => t.lastNack)) ? true : undefined));

    admin = new AdminServer();
    admin.route('/debug/nodes', () => ({ json: nodeStatuses(cp.xds) }));
    admin.route('/debug/ir', () => ({ json: ir }));
    adminUrl = `http://127.0.0.1:${await admin.listen(0)}`;
  });

  afterAll(async () => {
    await envoy?.stop();
    await cp?.stop();
    await admin?.close();
    await u0?.close();
  });

  test('prints the nodes with their acknowledged versions and the rejection, and the live versions with weights', async () => {
    const r = await runStatus(['--admin', adminUrl]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const lines = r.stdout.split('\n');
    expect(lines[0]).toBe(`control plane ${adminUrl}`);
    expect(r.stdout).toContain('NODES (1 connected)');
    expect(lines.find((l) => l.startsWith('NODE '))).toMatch(/^NODE\s+GROUP\s+STREAM\s+TYPE\s+ACKED\s+PENDING\s+REJECTED$/);
    const row = (type: string) => lines.find((l) => new RegExp(`\\s${type}\\s`).test(l) && !l.startsWith('NODE')) ?? '';
    expect(row('cds')).toMatch(new RegExp(`^status-edge-1\\s+edge\\s+#1 ads/sotw\\s+cds\\s+${good.typeVersion(TypeUrl.Cluster)}\\s+-\\s+-$`));
    expect(row('lds')).toMatch(new RegExp(`^\\s+lds\\s+${good.typeVersion(TypeUrl.Listener)}\\s+-\\s+-$`));
    // The route configuration Envoy refused: its last good version stays acknowledged, with Envoy's detail.
    expect(row('rds')).toMatch(new RegExp(`^\\s+rds\\s+${good.typeVersion(TypeUrl.RouteConfiguration)}\\s+-\\s+[0-9a-f]{16}: .*(regex|missing|broken)`, 'i'));

    // The quickstart's two models: the classic one and the LLM one.
    expect(r.stdout).toContain('MODELS (2)');
    expect(lines.find((l) => l.startsWith('MODEL '))).toMatch(/^MODEL\s+VERSION\s+ROLE\s+WEIGHT\s+ALIASES\s+NOTE$/);
    expect(lines).toContainEqual(expect.stringMatching(/^fraud-detector\s+1\s+stable\s+90%\s+champion$/));
    expect(lines).toContainEqual(expect.stringMatching(/^\s+2\s+canary\s+10%\s+challenger$/));
    expect(lines).toContainEqual(expect.stringMatching(/^support-bot\s+1\s+stable\s+100%\s+champion$/));
  });

  test('--json prints the same data as JSON', async () => {
    const r = await runStatus(['--admin', adminUrl, '--json']);
    expect(r.code).toBe(0);
    const status = JSON.parse(r.stdout) as FleetStatus;
    expect(status.nodes.map((n) => [n.node, n.group])).toEqual([['status-edge-1', 'edge']]);
    expect(status.nodes[0]?.types.find((t) => t.type === 'rds')?.lastNack?.detail).toMatch(/regex|missing|broken/i);
    expect(status.ir?.models[0]?.live.map((v) => [v.version, v.weight, v.role])).toEqual([
      ['1', 90, 'stable'],
      ['2', 10, 'canary'],
    ]);
  });

  test('the admin URL comes from FLOWGATE_ADMIN_URL; an unreachable endpoint exits 1 with a clear message', async () => {
    expect((await runStatus([], { FLOWGATE_ADMIN_URL: adminUrl })).code).toBe(0);
    const nobody = `http://127.0.0.1:${await freePort()}`;
    const r = await runStatus(['--admin', nobody]);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toContain(`flowgate status: ${nobody}: cannot reach the control plane admin endpoint`);
    expect(r.stderr).toContain('ECONNREFUSED');
    expect(r.stderr).toContain('FLOWGATE_ADMIN_URL');
  });

  test('an endpoint that is not a Flowgate admin exits 1', async () => {
    const other = new AdminServer();
    const url = `http://127.0.0.1:${await other.listen(0)}`;
    try {
      const r = await runStatus(['--admin', url]);
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/GET \/debug\/nodes answered 404/);
    } finally {
      await other.close();
    }
  });
});
