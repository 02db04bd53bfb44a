import { describe, expect, test } from 'vitest';
import { GatewayController } from '../../src/control/controller.js';
import { TypeUrl } from '../../src/resources/types.js';
import type { Snapshot } from '../../src/xds/snapshot.js';
import { SnapshotCache } from '../../src/xds/cache.js';
import { FRAUD_POLICY as POLICY, registryWithChampion } from './fixtures.js';

/**
 * `flowgate serve` builds ADS snapshots from the start and an xDS mode's only once a client of that mode
 * watches it: the demanded mode's snapshot is the one an eager build makes, and it follows every change after.
 */

const nextTurn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/** A controller built the way serve builds it: ADS only, the cache asking for the rest. */
function lazy(): { cache: SnapshotCache; controller: GatewayController } {
  const cache = new SnapshotCache();
  const controller = new GatewayController({ cache, modes: ['ads'], clusterLingerMs: 0 });
  cache.whenMissing((key) => controller.demand(key.variant));
  return { cache, controller };
}

describe('xDS modes built on demand', () => {
  test('a watch on an unbuilt mode builds it by the next turn, equal to an eager build, and it follows the changes after', async () => {
    const eager = new GatewayController({ cache: new SnapshotCache(), clusterLingerMs: 0 });
    eager.setPolicy(POLICY);
    eager.setRegistry(registryWithChampion('1'));

    const { cache, controller } = lazy();
    controller.setPolicy(POLICY);
    controller.setRegistry(registryWithChampion('1'));
    expect(Object.keys(controller.versions()).sort()).toEqual(['ads', 'proxyless']);
    expect(controller.versions().ads).toBe(eager.versions().ads);

    const seen: Snapshot[] = [];
    cache.watch({ group: '*', variant: 'grpc' }, (s) => {
      if (s) seen.push(s);
    });
    // Scheduled, not built inside the watch call.
    expect(cache.getSnapshot('*', 'grpc')).toBeUndefined();
    await nextTurn();
    expect(seen.map((s) => s.version)).toEqual([eager.versions().grpc]);
    expect(controller.versions().grpc).toBe(eager.versions().grpc);
    expect(controller.versions()['delta-grpc']).toBeUndefined();
    // ADS was not republished by the demand: its version stays.
    expect(controller.versions().ads).toBe(eager.versions().ads);

    // From now on both modes follow every change.
    eager.setRegistry(registryWithChampion('2'));
    controller.setRegistry(registryWithChampion('2'));
    expect(seen.at(-1)?.version).toBe(eager.versions().grpc);
    expect(controller.versions().ads).toBe(eager.versions().ads);
    expect([...(seen.at(-1)?.resources(TypeUrl.Cluster).keys() ?? [])].some((n) => n.startsWith('model_fraud_'))).toBe(true);
  });

  test('a watch before the first build waits for it, with the mode in it; ADS, proxyless and unknown variants demand nothing', async () => {
    const eager = new GatewayController({ cache: new SnapshotCache(), clusterLingerMs: 0 });
    eager.setPolicy(POLICY);
    eager.setRegistry(registryWithChampion('1'));

    const { cache, controller } = lazy();
    cache.watch({ group: 'team-a', variant: 'delta-grpc' }, () => undefined);
    cache.watch({ group: '*', variant: 'ads' }, () => undefined);
    cache.watch({ group: '*', variant: 'proxyless' }, () => undefined);
    cache.watch({ group: '*', variant: 'no-such-mode' }, () => undefined);
    await nextTurn();
    expect(controller.versions()).toEqual({});
    controller.setPolicy(POLICY);
    controller.setRegistry(registryWithChampion('1'));
    expect(Object.keys(controller.versions()).sort()).toEqual(['ads', 'delta-grpc', 'proxyless']);
    expect(controller.versions()['delta-grpc']).toBe(eager.versions()['delta-grpc']);
    // The group without a snapshot of its own gets the fallback group's.
    expect(cache.getSnapshot('team-a', 'delta-grpc')?.version).toBe(eager.versions()['delta-grpc']);
  });
});
