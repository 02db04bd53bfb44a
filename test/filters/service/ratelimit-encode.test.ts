import { describe, expect, test } from 'vitest';
import { encodeRateLimitAnswer, RateLimitAnswer, type AnswerStatus } from '../../../filters/service/ratelimit-encode.js';
import { messageType, TO_OBJECT } from '../../../src/proto/root.js';

/**
 * The hand-written RateLimitResponse encoder against protobufjs' own: the same bytes either way, for the shapes the handler builds and for edge values (zeros, the largest
 * uint32, multi-byte varints, non-ASCII headers, empty strings, a body), and an unusual duration falls back.
 */

const type = messageType('envoy.service.ratelimit.v3.RateLimitResponse');
const decoded = (bytes: Uint8Array): unknown => type.toObject(type.decode(bytes), TO_OBJECT);
const viaProtobufjs = (answer: RateLimitAnswer): Uint8Array => type.encode(type.fromObject({ ...answer })).finish();

/** A small seeded generator, so a failure names a reproducible case. */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

const pick = <T>(r: () => number, xs: readonly T[]): T => xs[Math.floor(r() * xs.length)] as T;
const NUMBERS = [0, 1, 127, 128, 255, 16_383, 16_384, 999_999, 2 ** 31 - 1, 2 ** 32 - 1];
const TEXTS = ['', 'x-ratelimit-limit', 'x-ratelimit-remaining', 'retry-after', '42', 'zürich-€', 'a'.repeat(200), 'content-type', 'application/json'];

function randomAnswer(r: () => number): RateLimitAnswer {
  const statuses: AnswerStatus[] = Array.from({ length: Math.floor(r() * 4) }, () => ({
    code: pick(r, [0, 1, 2]),
    ...(r() < 0.7 && { current_limit: { requests_per_unit: pick(r, NUMBERS), unit: pick(r, [0, 1, 2, 3, 4]) } }),
    limit_remaining: pick(r, NUMBERS),
    duration_until_reset: { seconds: String(pick(r, [...NUMBERS, 86_400, 2 ** 40])), nanos: pick(r, [0, 0, 1, 500_000_000]) },
  }));
  const headers = Array.from({ length: Math.floor(r() * 5) }, () => ({ key: pick(r, TEXTS), value: pick(r, TEXTS) }));
  const body = r() < 0.3 ? Buffer.from(pick(r, ['{"error":"rate_limited"}', '', 'é'.repeat(300)])) : undefined;
  return new RateLimitAnswer(pick(r, [0, 1, 2]), statuses, headers, body);
}

describe('the RateLimitResponse encoder', () => {
  test("the handler's two answers, OK with headers and OVER_LIMIT with a body, decode as protobufjs' do", () => {
    const ok = new RateLimitAnswer(1, [{ code: 1, current_limit: { requests_per_unit: 1_000_000, unit: 3 }, limit_remaining: 999_987, duration_until_reset: { seconds: '2713', nanos: 0 } }], [
      { key: 'x-ratelimit-limit', value: '1000000, 1000000;w=3600' },
      { key: 'x-ratelimit-remaining', value: '999987' },
      { key: 'x-ratelimit-reset', value: '2713' },
    ]);
    const over = new RateLimitAnswer(2, [{ code: 2, current_limit: { requests_per_unit: 5, unit: 2 }, limit_remaining: 0, duration_until_reset: { seconds: '37', nanos: 0 } }], [{ key: 'retry-after', value: '37' }, { key: 'content-type', value: 'application/json' }], Buffer.from('{"error":"rate_limited","message":"rate limit exceeded","retry_after_seconds":37}'));
    for (const answer of [ok, over]) expect(encodeRateLimitAnswer(answer).equals(viaProtobufjs(answer))).toBe(true);
    expect(decoded(encodeRateLimitAnswer(over))).toMatchObject({ overall_code: 'OVER_LIMIT', statuses: [{ code: 'OVER_LIMIT', limit_remaining: 0, duration_until_reset: { seconds: '37' } }] });
  });

  test('3,000 seeded answers encode to the same bytes either way', () => {
    const r = rng(14);
    for (let i = 0; i < 3_000; i++) {
      const answer = randomAnswer(r);
      expect(encodeRateLimitAnswer(answer).toString('hex'), `case ${i}`).toBe(Buffer.from(viaProtobufjs(answer)).toString('hex'));
    }
  });

  test('a negative duration goes through protobufjs (a 10-byte varint)', () => {
    const answer = new RateLimitAnswer(1, [{ code: 1, limit_remaining: 3, duration_until_reset: { seconds: '-2', nanos: 0 } }], []);
    expect(decoded(encodeRateLimitAnswer(answer))).toMatchObject({ statuses: [{ duration_until_reset: { seconds: '-2' } }] });
  });
});
