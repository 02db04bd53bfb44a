import { describe, expect, test } from 'vitest';
import { GatewayController } from '../../src/control/controller.js';
import { signatureKey, type SignatureMap, type VersionRef } from '../../src/registry/signatures.js';
import { SnapshotCache } from '../../src/xds/cache.js';
import { policy, registry } from '../ir/fixtures.js';

/**
 * After each build the controller names the routed versions whose signature is still unknown. It follows the
 * models that changed (most process nothing): a move of another model keeps what a validating model waits
 * for, a read signature clears it, a move of the validating model asks for its new version.
 */

const POLICY = policy({
  'gateway.yaml': 'kind: Gateway\nlisteners: [{ name: public, address: 127.0.0.1, port: 10000 }]\n',
  'fraud.yaml': 'kind: Model\nname: fraud\nupstream: { versionTag: flowgate.address }\nvalidation: { input: signature, maxBodyBytes: 65536 }\ntraffic: { stable: { alias: champion } }\n',
  'plain.yaml': 'kind: Model\nname: plain\nupstream: { versionTag: flowgate.address }\ntraffic: { stable: { alias: champion } }\n',
});

const versions = (host: string): Record<string, { tags: Record<string, string> }> =>
  Object.fromEntries(['1', '2', '3'].map((v) => [v, { tags: { 'flowgate.address': `${host}.${v}:8080` } }]));

const registryAt = (fraud: string, plain: string) =>
  registry({ fraud: { versions: versions('10.0.0'), aliases: { champion: fraud } }, plain: { versions: versions('10.0.1'), aliases: { champion: plain } } });

const named = (refs: readonly VersionRef[]): string[] => refs.map((r) => `${r.name} v${r.version}`).sort();

describe('wanted signatures', () => {
  test('follow the models that changed: kept through other moves, cleared once read, asked again for a new version', () => {
    const asked: string[][] = [];
    const controller = new GatewayController({ cache: new SnapshotCache(), modes: ['ads'], clusterLingerMs: 0, onSignaturesWanted: (refs) => asked.push(named(refs)) });
    controller.setPolicy(POLICY);
    controller.setRegistry(registryAt('1', '1'));
    expect(named(controller.wantedSignatures())).toEqual(['fraud v1']);
    // Another model moves: fraud is the same model, still waiting.
    controller.setRegistry(registryAt('1', '2'));
    expect(named(controller.wantedSignatures())).toEqual(['fraud v1']);
    // Its signature is read: nothing more is wanted.
    const [ref] = controller.wantedSignatures();
    if (!ref) throw new Error('no wanted signature');
    const found: SignatureMap = new Map([[signatureKey(ref), { status: 'found', signature: { inputs: [{ kind: 'column', name: 'x', type: { kind: 'scalar', type: 'double' }, required: true }], outputs: [], params: [] } }]]);
    controller.setSignatures(found);
    expect(controller.wantedSignatures()).toEqual([]);
    controller.setRegistry(registryAt('1', '3'));
    expect(controller.wantedSignatures()).toEqual([]);
    // fraud moves to a version whose signature is unknown.
    controller.setRegistry(registryAt('2', '3'));
    expect(named(controller.wantedSignatures())).toEqual(['fraud v2']);
    expect(asked).toEqual([['fraud v1'], ['fraud v1'], ['fraud v2']]);
  });
});
