import { describe, expect, test } from 'vitest';
import { GatewayController } from '../../src/control/controller.js';
import { metricsRegistry } from '../../src/observability/metrics.js';
import { SnapshotCache } from '../../src/xds/cache.js';
import { policy, registry } from '../ir/fixtures.js';

/**
 * The live-version gauges are brought up to date when the metrics are read, from what the builds noted since
 * the last read: whatever happened in between, a read shows each model's live versions of the last build and
 * no series of a version or model that is gone.
 */

const GATEWAY = 'kind: Gateway\nlisteners: [{ name: public, address: 127.0.0.1, port: 10000 }]\n';
const MODEL = (name: string): string =>
  `kind: Model\nname: ${name}\nupstream: { versionTag: flowgate.address }\ntraffic: { stable: { alias: champion }, canary: { alias: challenger, weight: 10 } }\n`;

const TWO = policy({ 'gateway.yaml': GATEWAY, 'fraud.yaml': MODEL('fraud'), 'plain.yaml': MODEL('plain') });
const FRAUD_ONLY = policy({ 'gateway.yaml': GATEWAY, 'fraud.yaml': MODEL('fraud') });

const versions = (host: string): Record<string, { tags: Record<string, string> }> =>
  Object.fromEntries(['1', '2', '3', '4'].map((v) => [v, { tags: { 'flowgate.address': `${host}.${v}:8080` } }]));

/** fraud's and plain's champion and challenger (no challenger: the champion alone). */
const registryAt = (fraud: [string, string?], plain: [string, string?]) =>
  registry({
    fraud: { versions: versions('10.0.0'), aliases: { champion: fraud[0], ...(fraud[1] && { challenger: fraud[1] }) } },
    plain: { versions: versions('10.0.1'), aliases: { champion: plain[0], ...(plain[1] && { challenger: plain[1] }) } },
  });

async function series(name: string): Promise<string[]> {
  const metric = metricsRegistry.getSingleMetric(name);
  if (!metric) throw new Error(`no metric ${name}`);
  const { values } = await metric.get();
  return values.map((v) => `${Object.entries(v.labels).map(([k, l]) => `${k}=${String(l)}`).join(',')} ${v.value}`).sort();
}

describe('live-version gauges', () => {
  test('a read shows the last build of each model, whatever changed between reads', async () => {
    const controller = new GatewayController({ cache: new SnapshotCache(), modes: ['ads'], clusterLingerMs: 0 });
    controller.setPolicy(TWO);
    controller.setRegistry(registryAt(['1', '2'], ['1']));
    expect(await series('flowgate_model_live_weight')).toEqual(['model=fraud,version=1 90', 'model=fraud,version=2 10', 'model=plain,version=1 100']);
    expect(await series('flowgate_model_live_versions')).toEqual(['model=fraud 2', 'model=plain 1']);

    // Two moves of fraud and one of plain before the next read: only the last versions have series.
    controller.setRegistry(registryAt(['2', '3'], ['1']));
    controller.setRegistry(registryAt(['4'], ['2', '3']));
    expect(await series('flowgate_model_live_weight')).toEqual(['model=fraud,version=4 100', 'model=plain,version=2 90', 'model=plain,version=3 10']);
    expect(await series('flowgate_model_live_versions')).toEqual(['model=fraud 1', 'model=plain 2']);

    // A read with nothing new changes nothing.
    expect(await series('flowgate_model_live_weight')).toEqual(['model=fraud,version=4 100', 'model=plain,version=2 90', 'model=plain,version=3 10']);

    // plain leaves the policy: its series go, fraud's stay.
    controller.setPolicy(FRAUD_ONLY);
    expect(await series('flowgate_model_live_weight')).toEqual(['model=fraud,version=4 100']);
    expect(await series('flowgate_model_live_versions')).toEqual(['model=fraud 1']);

    // It comes back, and moves, before a read.
    controller.setPolicy(TWO);
    controller.setRegistry(registryAt(['4'], ['3']));
    expect(await series('flowgate_model_live_weight')).toEqual(['model=fraud,version=4 100', 'model=plain,version=3 100']);
  });

  test('a full build replaces every series, including those of a model only the earlier builds had', async () => {
    const first = new GatewayController({ cache: new SnapshotCache(), modes: ['ads'], clusterLingerMs: 0 });
    first.setPolicy(TWO);
    first.setRegistry(registryAt(['1', '2'], ['1']));
    expect(await series('flowgate_model_live_versions')).toEqual(['model=fraud 2', 'model=plain 1']);
    // A new controller's first build is a full one: plain, which it does not have, is gone from the gauges.
    const second = new GatewayController({ cache: new SnapshotCache(), modes: ['ads'], clusterLingerMs: 0 });
    second.setPolicy(FRAUD_ONLY);
    second.setRegistry(registryAt(['3'], ['1']));
    expect(await series('flowgate_model_live_versions')).toEqual(['model=fraud 1']);
    expect(await series('flowgate_model_live_weight')).toEqual(['model=fraud,version=3 100']);
  });
});
