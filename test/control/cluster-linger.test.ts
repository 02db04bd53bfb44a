import { afterEach, beforeEach, describe, expect, test, vi } from 'vitest';
import { GatewayController } from '../../src/control/controller.js';
import { TypeUrl } from '../../src/resources/types.js';
import { SnapshotCache } from '../../src/xds/cache.js';
import { FRAUD_POLICY as POLICY, registryWithChampion } from './fixtures.js';

/**
 * A cluster that leaves the configuration (its version stopped being live) is still sent to Envoys for
 * clusterLingerMs, so a request whose route was chosen just before the change, and is still in the gateway's
 * filters, finds its cluster; then it is removed with a push of its own.
 */

const versionClusters = (controller: GatewayController): string[] =>
  [...(controller.snapshot('ads')?.resources(TypeUrl.Cluster).keys() ?? [])].filter((name) => name.startsWith('model_fraud_')).sort();

describe('removed clusters linger', () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  test('the old version cluster stays for the linger time, then a push removes it; the rendered version never has it', () => {
    const cache = new SnapshotCache();
    const controller = new GatewayController({ cache, modes: ['ads'], clusterLingerMs: 10_000 });
    controller.setPolicy(POLICY);
    controller.setRegistry(registryWithChampion('1'));
    const [v1] = versionClusters(controller);
    expect(v1).toBeDefined();
    const rendered1 = controller.versions().ads;

    controller.setRegistry(registryWithChampion('2'));
    const both = versionClusters(controller);
    expect(both).toHaveLength(2);
    expect(both).toContain(v1);
    // What render prints (and replicas agree on) is the configuration without the lingering cluster.
    expect(controller.versions().ads).not.toBe(rendered1);
    expect(controller.snapshot('ads')?.version).not.toBe(controller.versions().ads);

    vi.advanceTimersByTime(9_000);
    expect(versionClusters(controller)).toEqual(both);
    vi.advanceTimersByTime(1_500);
    const after = versionClusters(controller);
    expect(after).toHaveLength(1);
    expect(after).not.toContain(v1);
    expect(controller.snapshot('ads')?.version).toBe(controller.versions().ads);
  });

  test('a cluster that comes back while lingering is the pipeline\'s again and is not removed later', () => {
    const controller = new GatewayController({ cache: new SnapshotCache(), modes: ['ads'], clusterLingerMs: 10_000 });
    controller.setPolicy(POLICY);
    controller.setRegistry(registryWithChampion('1'));
    const [v1] = versionClusters(controller);
    controller.setRegistry(registryWithChampion('2'));
    controller.setRegistry(registryWithChampion('1'));
    vi.advanceTimersByTime(11_000);
    const now = versionClusters(controller);
    expect(now).toEqual([v1]);
  });

  test('a linger of 0 removes at once', () => {
    const controller = new GatewayController({ cache: new SnapshotCache(), modes: ['ads'], clusterLingerMs: 0 });
    controller.setPolicy(POLICY);
    controller.setRegistry(registryWithChampion('1'));
    controller.setRegistry(registryWithChampion('2'));
    expect(versionClusters(controller)).toHaveLength(1);
    expect(controller.snapshot('ads')?.version).toBe(controller.versions().ads);
  });
});
