import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, test } from 'vitest';
import type { NodeStatus } from '../../src/admin/nodes.js';
import { buildGatewayIR } from '../../src/ir/build.js';
import type { GatewayIR } from '../../src/ir/types.js';
import { formatIssues } from '../../src/policy/format.js';
import { loadPolicyDir } from '../../src/policy/load.js';
import { loadRegistryFile } from '../../src/registry/file.js';
import { translateGateway } from '../../src/translate/index.js';
import type { ConfigSourceMode } from '../../src/resources/config-source.js';
import { Snapshot } from '../../src/xds/snapshot.js';
import { startEnvoy, type EnvoyProcess } from '../harness/envoy.js';
import { freePorts } from '../harness/ports.js';
import { waitFor } from '../harness/process.js';
import { startXdsServer, type TestXdsServer } from '../harness/xds-server.js';

/**
 * Every golden case is served to a real Envoy, which must ACK every resource (a NACK fails the test with
 * Envoy's detail): the goldens are what Envoy really accepts, not only what the protos encode.
 */

const TESTDATA = join(import.meta.dirname, 'testdata');
const CASES = readdirSync(TESTDATA, { withFileTypes: true })
  .filter((d) => d.isDirectory())
  .map((d) => d.name)
  .sort();

let cp: TestXdsServer | undefined;
let envoy: EnvoyProcess | undefined;
afterEach(async () => {
  await envoy?.stop();
  await cp?.stop();
});

async function caseIR(name: string): Promise<GatewayIR> {
  const load = await loadPolicyDir(join(TESTDATA, name, 'policy'));
  if (!load.ok) throw new Error(formatIssues(load.issues, name));
  const { ir } = buildGatewayIR(load.policy, await loadRegistryFile(join(TESTDATA, name, 'registry.yaml')));
  // The goldens' listener ports may be taken on this machine; free loopback ports stand in for them.
  const ports = await freePorts(ir.listeners.length);
  return { ...ir, listeners: ir.listeners.map((l, i) => ({ ...l, address: '127.0.0.1', port: ports[i] ?? 0 })) };
}

const RUNS: [string, ConfigSourceMode][] = [...CASES.map((c): [string, ConfigSourceMode] => [c, 'ads']), ['mixed', 'grpc'], ['mixed', 'delta-grpc']];

describe('real Envoy accepts every golden case', () => {
  test.each(RUNS)('%s (%s)', async (name, mode) => {
    const ir = await caseIR(name);
    const inputs = translateGateway(ir, mode);
    cp = await startXdsServer();
    cp.cache.setSnapshot('*', Snapshot.from(inputs));
    envoy = await startEnvoy({ nodeId: `golden-${name}-${mode}`, nodeCluster: 'golden', xdsHost: '127.0.0.1', xdsPort: cp.port, ads: mode === 'ads', delta: mode === 'delta-grpc', waitReady: false });
    const expected = new Set(inputs.map((i) => i.typeUrl));
    const server = cp;
    const types = await waitFor(
      'every resource type ACKed',
      async () => {
        const nodes = (await (await fetch(`${server.adminUrl}/debug/nodes`)).json()) as NodeStatus[];
        const all = nodes.flatMap((n) => n.types);
        const nack = all.find((t) => t.lastNack);
        if (nack) throw new Error(`Envoy rejected ${nack.type}: ${nack.lastNack?.detail ?? ''}`);
        const acked = new Set(all.filter((t) => t.lastAck).map((t) => t.typeUrl));
        return [...expected].every((t) => acked.has(t)) ? all : undefined;
      },
      { timeoutMs: 20_000, describe: () => envoy?.process.tail(20) ?? '' },
    );
    expect(types.filter((t) => t.lastNack)).toEqual([]);
    const dump = JSON.stringify(await envoy.configDump());
    for (const l of ir.listeners) expect(dump).toContain(`"port_value":${l.port}`);
  }, 40_000);
});
