import { describe, expect, test } from 'vitest';
import type { GatewayIR } from '../../src/ir/types.js';
import { filterServiceCluster } from '../../src/translate/http-filters/filter-service.js';

/** The filter service's cluster: one resource object while its inputs are equal, so it is encoded and compared once. */
describe('filterServiceCluster', () => {
  const irWith = (address: string, tls?: { ca: string }): GatewayIR => ({ filterService: { address, port: 9001, timeoutMs: 200, tls } }) as unknown as GatewayIR;

  test('is the same resource for equal inputs of different IRs, and a new one when they differ', () => {
    const [first] = filterServiceCluster(irWith('10.0.0.1'));
    const [again] = filterServiceCluster(irWith('10.0.0.1'));
    expect(again).toBe(first);
    const [moved] = filterServiceCluster(irWith('10.0.0.2'));
    expect(moved).not.toBe(first);
    expect(JSON.stringify(moved?.message)).toContain('10.0.0.2');
    const [secured] = filterServiceCluster(irWith('10.0.0.2', { ca: '/etc/ca.pem' }));
    expect(secured).not.toBe(moved);
    expect(JSON.stringify(secured?.message)).toContain('/etc/ca.pem');
    // Back to the first inputs: the cluster says what they say.
    expect(JSON.stringify(filterServiceCluster(irWith('10.0.0.1'))[0]?.message)).toBe(JSON.stringify(first?.message));
    expect(filterServiceCluster({ filterService: undefined } as unknown as GatewayIR)).toEqual([]);
  });
});
