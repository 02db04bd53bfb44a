import { afterEach, describe, expect, test, vi } from 'vitest';
import { MemoryAuditLog } from '../../../filters/service/audit.js';
import { RATE_LIMIT_SERVICE } from '../../../filters/service/grpc.js';
import { decodeRateLimitPartially, decodeRateLimitRequest } from '../../../filters/service/ratelimit-decode.js';
import { FilterService } from '../../../filters/service/service.js';
import { MemoryStore } from '../../../filters/store/counters/store.js';
import { runPipeline } from '../../../src/pipeline/index.js';
import { formatIssues } from '../../../src/policy/format.js';
import { policyFromFiles } from '../../../src/policy/load.js';
import { messageType } from '../../../src/proto/root.js';
import { seededRandom } from '../../harness/prng.js';

/**
 * The partial RateLimitRequest decoder must read exactly what the full protobufjs decode reads (domain, the
 * descriptors' entries, hits_addend), for every realistic request, and hand anything unusual to the full decode.
 */

const type = messageType('envoy.service.ratelimit.v3.RateLimitRequest');
const encode = (value: object): Buffer => Buffer.from(type.encode(type.fromObject(value)).finish());
const target = (consumer: string): object => ({ entries: [{ key: 'model', value: 'chat' }, { key: 'consumer', value: consumer }] });

/** What Envoy's rate-limit filter sends for Flowgate's routes, and edge cases of the fields ShouldRateLimit reads. */
const REQUESTS: Record<string, object> = {
  "Envoy's request for a limited route": { domain: 'flowgate', descriptors: [target('consumer-7')] },
  'hits_addend set': { domain: 'flowgate', descriptors: [target('acme')], hits_addend: 5 },
  'hits_addend at the top of 31 bits': { domain: 'flowgate', descriptors: [target('acme')], hits_addend: 0x7fffffff },
  'a limit override on a descriptor': { domain: 'flowgate', descriptors: [{ ...target('acme'), limit: { requests_per_unit: 3, unit: 'MINUTE' } }] },
  'several descriptors, entries in another order, anonymous': {
    domain: 'flowgate',
    descriptors: [{ entries: [{ key: 'consumer', value: 'b' }, { key: 'model', value: 'chat' }] }, { entries: [{ key: 'model', value: 'chat' }] }, target('acme'), { entries: [] }],
  },
  'unicode, empty and long values': {
    domain: 'dömäin ☃',
    descriptors: [{ entries: [{ key: 'model', value: 'zoë 𝄞' }, { key: '', value: '' }, { key: 'consumer', value: 'c'.repeat(70_000) }] }],
  },
  'no descriptors': { domain: 'flowgate' },
  empty: {},
};

function agrees(bytes: Buffer): void {
  const partial = decodeRateLimitPartially(bytes);
  expect(partial).toBeDefined();
  const whole = type.decode(bytes) as unknown as { domain: string; hits_addend: number; descriptors: { entries: { key: string; value: string }[] }[] };
  expect(partial?.domain).toBe(whole.domain);
  expect(partial?.hits_addend).toBe(whole.hits_addend);
  expect(partial?.descriptors).toEqual(whole.descriptors.map((d) => ({ entries: d.entries.map((e) => ({ key: e.key, value: e.value })) })));
}

describe('partial RateLimitRequest decode', () => {
  test.each(Object.entries(REQUESTS))('%s: the fields ShouldRateLimit reads agree with the full decode', (_what, value) => {
    agrees(encode(value));
  });

  afterEach(() => {
    vi.useRealTimers();
  });

  test('the real handler answers the same bytes to both decodes (OK, OVER_LIMIT, no limit, other domain, hits)', async () => {
    // One clock for both services: the answers carry seconds to reset.
    vi.useFakeTimers({ now: Date.UTC(2026, 11, 3, 0, 0, 0, 500), toFake: ['Date'] });
    const text =
      'kind: Consumer\nname: acme\nrateLimits: [{ requests: 3, per: minute, model: chat }]\n---\nkind: Consumer\nname: b\nrateLimits: [{ requests: 1, per: hour, model: chat }]\n---\n' +
      'kind: Model\nname: chat\nupstream: { addressTemplate: "127.0.0.1:9" }\ntraffic: { stable: { version: "1" } }\nrateLimits: [{ requests: 100, per: second }]\n';
    const load = policyFromFiles('t', [{ file: 'p.yaml', text }]);
    if (!load.ok) throw new Error(formatIssues(load.issues, 't'));
    const service = (): FilterService => {
      const s = new FilterService({ store: new MemoryStore(), audit: new MemoryAuditLog() });
      s.setPolicy(runPipeline({ policy: load.policy, registry: undefined }).filterPolicy, 'v1');
      return s;
    };
    const [a, b] = [service(), service()];
    const srl = RATE_LIMIT_SERVICE.ShouldRateLimit;
    if (!srl) throw new Error('no ShouldRateLimit');
    const sequence = [
      REQUESTS["Envoy's request for a limited route"],
      REQUESTS['several descriptors, entries in another order, anonymous'],
      REQUESTS['several descriptors, entries in another order, anonymous'],
      REQUESTS['hits_addend set'],
      REQUESTS['a limit override on a descriptor'],
      { domain: 'other', descriptors: [target('acme')] },
      REQUESTS['no descriptors'],
      REQUESTS.empty,
    ] as object[];
    const codes = new Set<number>();
    for (const value of sequence) {
      const bytes = encode(value);
      const viaPartial = srl.responseSerialize(await a.shouldRateLimit(decodeRateLimitRequest(bytes) as never));
      const viaFull = srl.responseSerialize(await b.shouldRateLimit(type.decode(bytes) as never));
      expect(viaPartial.equals(viaFull)).toBe(true);
      codes.add(viaPartial[1] ?? 0);
    }
    // Both OK (1) and OVER_LIMIT (2) answers were compared.
    expect([...codes].sort()).toEqual([1, 2]);
  });

  test('unusual messages go to the full decode', () => {
    const good = encode(REQUESTS["Envoy's request for a limited route"] as object);
    const cases: Record<string, Buffer> = {
      'domain as a varint': Buffer.from([0x08, 0x01]),
      'hits_addend length-delimited': Buffer.from([0x1a, 0x00]),
      'hits_addend of 2^31': encode({ hits_addend: 0x80000000 }),
      'an entry key as a varint': Buffer.from([0x12, 0x04, 0x0a, 0x02, 0x08, 0x01]),
      'entries as a varint': Buffer.from([0x12, 0x02, 0x08, 0x01]),
      // protobufjs would read the varint as the override's length, and the entries after it as its contents.
      'a limit override as a varint': Buffer.from('0a08666c6f77676174651221100d0a056d6f64656c1204636861740a100a08636f6e73756d65721204f8639e651805', 'hex'),
      'field number 0': Buffer.from([0x02, 0x00]),
      'a group': Buffer.from([0x0b, 0x0c]),
      'a length past the end': Buffer.from([0x12, 0x05, 0x0a, 0x00]),
      'an over-long varint': Buffer.from([0x18, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]),
      truncated: good.subarray(0, good.length - 1),
    };
    for (const [what, bytes] of Object.entries(cases)) expect(decodeRateLimitPartially(bytes), what).toBeUndefined();
    // What the handler then gets is the full decode's reading.
    expect((decodeRateLimitRequest(cases['hits_addend of 2^31'] as Buffer) as { hits_addend: number }).hits_addend).toBe(0x80000000);
    expect(() => decodeRateLimitRequest(cases.truncated as Buffer)).toThrow();
  });

  test('mutated requests: partially decoded only when the fields ShouldRateLimit reads agree with the full decode', () => {
    const random = seededRandom(14);
    const seeds = Object.values(REQUESTS).map(encode).filter((b) => b.length > 0 && b.length < 10_000);
    let partial = 0;
    for (let i = 0; i < 3000; i++) {
      const bytes = Buffer.from(seeds[Math.floor(random() * seeds.length)] as Buffer);
      const flips = 1 + Math.floor(random() * 3);
      for (let f = 0; f < flips; f++) bytes[Math.floor(random() * bytes.length)] = Math.floor(random() * 256);
      const cut = random() < 0.2 ? bytes.subarray(0, Math.floor(random() * bytes.length)) : bytes;
      if (decodeRateLimitPartially(cut) === undefined) continue;
      let decodes = true;
      try {
        type.decode(cut);
      } catch {
        // A field ShouldRateLimit does not read is skipped at its length, not decoded: its contents may be broken.
        decodes = false;
      }
      if (decodes) {
        agrees(cut);
        partial += 1;
      }
    }
    expect(partial).toBeGreaterThan(100);
  });
});
