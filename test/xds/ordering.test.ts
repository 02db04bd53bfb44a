import { describe, expect, test } from 'vitest';
import { TypeUrl } from '../../src/resources/types.js';
import { isFullStateType, isRetainedOnRemoval, pumpAds, PUSH_ORDER, warmingCompanion, type PushOutcome, type TypeProgress } from '../../src/xds/stream/ordering.js';

/** The ADS ordering rules, as a pure function: which types are pushed, in which order, and when removals go. */

const ALL = [TypeUrl.Cluster, TypeUrl.ClusterLoadAssignment, TypeUrl.Listener, TypeUrl.RouteConfiguration, TypeUrl.FilterPolicy];

function progress(pending: TypeUrl[] = [], responded: TypeUrl[] = ALL): TypeProgress[] {
  return ALL.map((typeUrl) => ({ typeUrl, pending: pending.includes(typeUrl), responded: responded.includes(typeUrl) }));
}

/** Runs one pump with the given outcome per type, returning the calls it made. */
function pump(types: TypeProgress[], outcome: (t: TypeUrl, retain: boolean) => PushOutcome): [TypeUrl, boolean][] {
  const calls: [TypeUrl, boolean][] = [];
  pumpAds(types, (t, retain) => {
    calls.push([t, retain]);
    return outcome(t, retain);
  });
  return calls;
}

describe('ADS ordering', () => {
  test('make before break: clusters first, then endpoints, listeners, routes, the filter policy', () => {
    expect(PUSH_ORDER).toEqual(ALL);
  });

  test('a pushed cluster update waits for its ACK, but its endpoints may still be sent (Envoy warms on them)', () => {
    const calls = pump(progress(), (t) => (t === TypeUrl.Cluster || t === TypeUrl.ClusterLoadAssignment ? 'sent' : 'settled'));
    expect(calls).toEqual([
      [TypeUrl.Cluster, true],
      [TypeUrl.ClusterLoadAssignment, true],
    ]);
  });

  test('while clusters await their ACK, listeners and routes are not sent', () => {
    const calls = pump(progress([TypeUrl.Cluster]), () => 'sent');
    expect(calls).toEqual([[TypeUrl.ClusterLoadAssignment, true]]);
  });

  test('once every type is settled, dropped clusters and endpoints are removed (retain false), clusters first', () => {
    const calls = pump(progress(), () => 'settled');
    expect(calls.filter(([, retain]) => !retain)).toEqual([
      [TypeUrl.Cluster, false],
      [TypeUrl.ClusterLoadAssignment, false],
    ]);
  });

  test('the removals of clusters and of endpoints go in the same pass, clusters first, without waiting for an ACK between them', () => {
    const calls = pump(progress(), (_t, retain) => (retain ? 'settled' : 'sent'));
    expect(calls.filter(([, retain]) => !retain)).toEqual([
      [TypeUrl.Cluster, false],
      [TypeUrl.ClusterLoadAssignment, false],
    ]);
  });

  test('after a refused change, types that hold config keep it, no removal happens, and a type never answered is still answered', () => {
    const calls = pump(progress([], [TypeUrl.Cluster, TypeUrl.ClusterLoadAssignment, TypeUrl.Listener]), (t) => (t === TypeUrl.Cluster ? 'blocked' : 'settled'));
    expect(calls.map(([t]) => t)).toEqual([TypeUrl.Cluster, TypeUrl.RouteConfiguration, TypeUrl.FilterPolicy]);
    expect(calls.every(([, retain]) => retain)).toBe(true);
  });

  test('type properties', () => {
    expect(ALL.filter(isFullStateType)).toEqual([TypeUrl.Cluster, TypeUrl.Listener, TypeUrl.FilterPolicy]);
    expect(ALL.filter(isRetainedOnRemoval)).toEqual([TypeUrl.Cluster, TypeUrl.ClusterLoadAssignment]);
    expect(ALL.map(warmingCompanion)).toEqual([TypeUrl.ClusterLoadAssignment, null, TypeUrl.RouteConfiguration, null, null]);
  });
});
