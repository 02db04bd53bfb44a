import { messageType } from '../../src/proto/root.js';
import { SELF_ENCODED } from './grpc.js';

/**
 * ShouldRateLimit's answer, encoded by hand: protobufjs' generated encoder allocated a Writer, an operation
 * list and a fork per sub-message (RateLimitResponse, each DescriptorStatus, its RateLimit and Duration,
 * each HeaderValue), about 2.5 KB per call. Here the size is computed first and the message written into one
 * buffer. The bytes are protobufjs' own for the same object (every field the handler sets is written, zeros
 * included, in field order), so Envoy reads what it read before. A negative duration (a 10-byte varint)
 * goes through protobufjs instead. Agreement with protobufjs: test/filters/service/ratelimit-encode.test.ts.
 */

export interface CurrentLimit {
  readonly requests_per_unit: number;
  readonly unit: number;
}

export interface AnswerStatus {
  readonly code: number;
  readonly current_limit?: CurrentLimit | undefined;
  readonly limit_remaining: number;
  readonly duration_until_reset: { readonly seconds: string; readonly nanos: number };
}

export interface HeaderPair {
  readonly key: string;
  readonly value: string;
}

const responseType = messageType('envoy.service.ratelimit.v3.RateLimitResponse');

// Tags: field number << 3 | wire type (0 varint, 2 length-delimited).
const T_OVERALL = (1 << 3) | 0;
const T_STATUS = (2 << 3) | 2;
const T_RESPONSE_HEADER = (3 << 3) | 2;
const T_RAW_BODY = (5 << 3) | 2;
const T_CODE = (1 << 3) | 0;
const T_CURRENT = (2 << 3) | 2;
const T_REMAINING = (3 << 3) | 0;
const T_RESET = (4 << 3) | 2;
const T_RPU = (1 << 3) | 0;
const T_UNIT = (2 << 3) | 0;
const T_SECONDS = (1 << 3) | 0;
const T_NANOS = (2 << 3) | 0;
const T_KEY = (1 << 3) | 2;
const T_VALUE = (2 << 3) | 2;

/** Bytes of a non-negative integer (up to 2^53) as a varint. */
function varintSize(n: number): number {
  let size = 1;
  while (n >= 128) {
    n = Math.floor(n / 128);
    size++;
  }
  return size;
}

function writeVarint(out: Buffer, at: number, n: number): number {
  while (n >= 128) {
    out[at++] = (n % 128) | 128;
    n = Math.floor(n / 128);
  }
  out[at++] = n;
  return at;
}

/** A varint field: its tag and value. */
const scalarSize = (n: number): number => 1 + varintSize(n);
/** A length-delimited field of `length` bytes. */
const lengthSize = (length: number): number => 1 + varintSize(length) + length;

export class RateLimitAnswer {
  constructor(
    readonly overall_code: number,
    readonly statuses: readonly AnswerStatus[],
    readonly response_headers_to_add: readonly HeaderPair[],
    readonly raw_body?: Buffer,
  ) {}

  /** The encoded RateLimitResponse (the codec calls it: filters/service/grpc.ts). */
  [SELF_ENCODED](): Buffer {
    return encodeRateLimitAnswer(this);
  }
}

export function encodeRateLimitAnswer(answer: RateLimitAnswer): Buffer {
  const statusSizes: number[] = [];
  let total = scalarSize(answer.overall_code);
  for (const s of answer.statuses) {
    const seconds = Number(s.duration_until_reset.seconds);
    if (!(Number.isSafeInteger(seconds) && seconds >= 0 && s.duration_until_reset.nanos >= 0)) return Buffer.from(responseType.encode(responseType.fromObject(answer)).finish());
    const reset = scalarSize(seconds) + scalarSize(s.duration_until_reset.nanos);
    let size = scalarSize(s.code) + scalarSize(s.limit_remaining >>> 0) + lengthSize(reset);
    if (s.current_limit) size += lengthSize(scalarSize(s.current_limit.requests_per_unit >>> 0) + scalarSize(s.current_limit.unit));
    statusSizes.push(size);
    total += lengthSize(size);
  }
  const headerSizes: number[] = [];
  for (const h of answer.response_headers_to_add) {
    const key = Buffer.byteLength(h.key);
    const value = Buffer.byteLength(h.value);
    const size = lengthSize(key) + lengthSize(value);
    headerSizes.push(size, key, value);
    total += lengthSize(size);
  }
  const body = answer.raw_body;
  if (body) total += lengthSize(body.length);

  const out = Buffer.allocUnsafe(total);
  let at = 0;
  out[at++] = T_OVERALL;
  at = writeVarint(out, at, answer.overall_code);
  answer.statuses.forEach((s, i) => {
    out[at++] = T_STATUS;
    at = writeVarint(out, at, statusSizes[i] as number);
    out[at++] = T_CODE;
    at = writeVarint(out, at, s.code);
    if (s.current_limit) {
      const rpu = s.current_limit.requests_per_unit >>> 0;
      const unit = s.current_limit.unit;
      out[at++] = T_CURRENT;
      at = writeVarint(out, at, scalarSize(rpu) + scalarSize(unit));
      out[at++] = T_RPU;
      at = writeVarint(out, at, rpu);
      out[at++] = T_UNIT;
      at = writeVarint(out, at, unit);
    }
    out[at++] = T_REMAINING;
    at = writeVarint(out, at, s.limit_remaining >>> 0);
    const seconds = Number(s.duration_until_reset.seconds);
    const nanos = s.duration_until_reset.nanos;
    out[at++] = T_RESET;
    at = writeVarint(out, at, scalarSize(seconds) + scalarSize(nanos));
    out[at++] = T_SECONDS;
    at = writeVarint(out, at, seconds);
    out[at++] = T_NANOS;
    at = writeVarint(out, at, nanos);
  });
  answer.response_headers_to_add.forEach((h, i) => {
    const [size, key, value] = [headerSizes[3 * i] as number, headerSizes[3 * i + 1] as number, headerSizes[3 * i + 2] as number];
    out[at++] = T_RESPONSE_HEADER;
    at = writeVarint(out, at, size);
    out[at++] = T_KEY;
    at = writeVarint(out, at, key);
    at += out.write(h.key, at, 'utf8');
    out[at++] = T_VALUE;
    at = writeVarint(out, at, value);
    at += out.write(h.value, at, 'utf8');
  });
  if (body) {
    out[at++] = T_RAW_BODY;
    at = writeVarint(out, at, body.length);
    at += body.copy(out, at);
  }
  if (at !== total) throw new Error(`RateLimitResponse encoder wrote ${at} of ${total} bytes`);
  return out;
}
