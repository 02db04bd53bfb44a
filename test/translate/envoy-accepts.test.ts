import { afterEach, describe, expect, test } from 'vitest';
import type { NodeStatus } from '../../src/admin/nodes.js';
import type { GatewayIR } from '../../src/ir/types.js';
import type { ConfigSourceMode } from '../../src/resources/config-source.js';
import { translateGateway } from '../../src/translate/index.js';
import { Snapshot } from '../../src/xds/snapshot.js';
import { makeCertificates } from '../harness/certs.js';
import { startEnvoy, type EnvoyProcess } from '../harness/envoy.js';
import { freePorts } from '../harness/ports.js';
import { waitFor } from '../harness/process.js';
import { startXdsServer, type TestXdsServer } from '../harness/xds-server.js';
import { CASES, caseIR, caseModes } from './cases.js';

/**
 * Every translator golden case is served to a real Envoy, which must ACK every resource type (a NACK fails
 * the test with Envoy's detail): the goldens are what Envoy really accepts, not only what the protos encode.
 */

let cp: TestXdsServer | undefined;
let envoy: EnvoyProcess | undefined;
afterEach(async () => {
  await envoy?.stop();
  await cp?.stop();
});

/** A case's IR on free loopback ports (the goldens' listener ports may be taken on this machine). */
async function onFreePorts(name: string): Promise<GatewayIR> {
  const ir = caseIR(name);
  const ports = await freePorts(ir.listeners.length);
  // Envoy reads TLS files when it accepts a cluster: a case's paths are replaced by real test certificates.
  const tls = ir.filterService?.tls;
  let filterService = ir.filterService;
  if (filterService && tls) {
    const certs = makeCertificates({ envoy: 'DNS:envoy.test' });
    filterService = { ...filterService, tls: { ...tls, ca: certs.ca, ...(tls.cert && certs.leaf('envoy')) } };
  }
  return { ...ir, filterService, listeners: ir.listeners.map((l, i) => ({ ...l, address: '127.0.0.1', port: ports[i] ?? 0 })) };
}

const RUNS: [string, ConfigSourceMode][] = CASES.flatMap((c) => caseModes(c).map((m): [string, ConfigSourceMode] => [c, m]));

describe('real Envoy accepts every golden case', () => {
  test.each(RUNS)('%s (%s)', async (name, mode) => {
    const ir = await onFreePorts(name);
    // The FilterPolicy is Flowgate's own type, which Envoy never subscribes to.
    const inputs = translateGateway(ir, mode).filter((r) => !r.typeUrl.includes('flowgate.v1'));
    cp = await startXdsServer();
    cp.cache.setSnapshot('*', Snapshot.from(inputs));
    expect(RUNS.length).toBeGreaterThanOrEqual(12);
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
