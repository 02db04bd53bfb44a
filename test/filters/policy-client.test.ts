import { afterEach, describe, expect, test } from 'vitest';
import type { NodeStatus } from '../../src/admin/nodes.js';
import { FILTER_POLICY_NAME, FILTER_POLICY_SCHEMA } from '../../src/contract/filter-policy.js';
import { runPipeline } from '../../src/pipeline/index.js';
import { canonicalJson } from '../../src/policy/policy.js';
import { TypeUrl } from '../../src/resources/types.js';
import { Snapshot } from '../../src/xds/snapshot.js';
import { FilterPolicyClient } from '../../filters/service/xds-client.js';
import type { FilterPolicy } from '../../src/contract/filter-policy.js';
import { waitFor } from '../harness/process.js';
import { startXdsServer, type TestXdsServer } from '../harness/xds-server.js';
import { policy } from '../ir/fixtures.js';

/** The filter service as an xDS client: it applies a FilterPolicy it can read and NACKs, with the reason, one it cannot. */

const good = runPipeline({ policy: policy({ 'm.yaml': 'kind: Model\nname: m\nupstream: { addressTemplate: "127.0.0.1:9000" }\ntraffic: { stable: { version: "1" } }\n' }), registry: undefined }).filterPolicy;

function snapshot(schema: number): Snapshot {
  return Snapshot.from([{ typeUrl: TypeUrl.FilterPolicy, name: FILTER_POLICY_NAME, message: { schema_version: schema, policy_json: canonicalJson({ ...good, schema }) } }]);
}

let server: TestXdsServer | undefined;
let client: FilterPolicyClient | undefined;
afterEach(async () => {
  client?.stop();
  await server?.stop();
});

async function nodeTypes(): Promise<NodeStatus['types']> {
  const nodes = (await (await fetch(`${server?.adminUrl ?? ''}/debug/nodes`)).json()) as NodeStatus[];
  return nodes.flatMap((n) => n.types);
}

describe('FilterPolicyClient', () => {
  test('applies a readable policy (ACK), then NACKs one of an unknown schema with the reason and keeps the first', async () => {
    server = await startXdsServer();
    server.cache.setSnapshot('*', snapshot(FILTER_POLICY_SCHEMA));
    const applied: [FilterPolicy, string][] = [];
    client = new FilterPolicyClient(`127.0.0.1:${server.port}`, 'filters-test');
    client.on('policy', (p, v) => applied.push([p, v]));
    client.start();
    await waitFor('the policy applied and ACKed', async () => ((await nodeTypes()).some((t) => t.lastAck) && applied.length === 1 ? true : undefined));
    expect(applied[0]?.[0]).toEqual(good);

    server.cache.setSnapshot('*', snapshot(FILTER_POLICY_SCHEMA + 7));
    const nack = await waitFor('a NACK', async () => (await nodeTypes()).find((t) => t.lastNack)?.lastNack ?? undefined);
    expect(nack.detail).toContain(`schema ${FILTER_POLICY_SCHEMA + 7} is not supported`);
    expect(applied).toHaveLength(1);
  });
});
