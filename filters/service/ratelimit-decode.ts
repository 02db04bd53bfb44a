import { messageType } from '../../src/proto/root.js';
import { lengthDelimited, Reader, UNUSUAL } from './wire-reader.js';

/**
 * A partial decoder of the rate-limit service's RateLimitRequest: only what ShouldRateLimit reads (`domain`,
 * each descriptor's `entries`, `hits_addend`); a descriptor's other fields (its `limit` override, and any
 * field a newer Envoy adds) are skipped by wire type without being decoded. The full protobufjs decode built
 * a message object per descriptor and per entry, with prototype defaults, on every call.
 *
 * As check-decode.ts: anything unusual hands the whole message to the full decoder (a known field with
 * another wire type (a descriptor's `limit` too), field 0, a group, a length past its message's end, a varint over 31 bits, which includes
 * a `hits_addend` of 2^31 or more, and any error). Strings are read as protobufjs reads them; a string given
 * twice keeps its last value, as there; entries and descriptors are repeated and keep their order.
 */

const full = messageType('envoy.service.ratelimit.v3.RateLimitRequest');

export interface PartialRateLimitEntry {
  key: string;
  value: string;
}

export interface PartialRateLimitRequest {
  domain: string;
  descriptors: { entries: PartialRateLimitEntry[] }[];
  hits_addend: number;
}

function entry(r: Reader, end: number): PartialRateLimitEntry {
  const out: PartialRateLimitEntry = { key: '', value: '' };
  while (r.pos < end) {
    const tag = r.tag();
    const field = tag >>> 3;
    if (field === 1 || field === 2) {
      if (!lengthDelimited(tag)) throw UNUSUAL;
      if (field === 1) out.key = r.string(end);
      else out.value = r.string(end);
    } else {
      r.skip(tag & 7, end);
    }
  }
  return out;
}

function descriptor(r: Reader, end: number): { entries: PartialRateLimitEntry[] } {
  const entries: PartialRateLimitEntry[] = [];
  while (r.pos < end) {
    const tag = r.tag();
    const field = tag >>> 3;
    // 1 the entries; 2 the limit override, skipped (protobufjs reads it as a message whatever its wire type).
    if ((field === 1 || field === 2) && !lengthDelimited(tag)) throw UNUSUAL;
    if (field === 1) {
      const stop = r.delimited(end);
      entries.push(entry(r, stop));
    } else {
      r.skip(tag & 7, end);
    }
  }
  return { entries };
}

/** The partial decode, or undefined when the message is unusual (the caller then decodes it in full). */
export function decodeRateLimitPartially(buf: Buffer): PartialRateLimitRequest | undefined {
  const r = new Reader(buf);
  const out: PartialRateLimitRequest = { domain: '', descriptors: [], hits_addend: 0 };
  try {
    while (r.pos < buf.length) {
      const tag = r.tag();
      const field = tag >>> 3;
      if (field === 1 || field === 2) {
        if (!lengthDelimited(tag)) return undefined;
        if (field === 1) {
          out.domain = r.string(buf.length);
        } else {
          const stop = r.delimited(buf.length);
          out.descriptors.push(descriptor(r, stop));
        }
      } else if (field === 3) {
        if ((tag & 7) !== 0) return undefined;
        out.hits_addend = r.uint32();
      } else {
        r.skip(tag & 7, buf.length);
      }
    }
  } catch (err) {
    if (err === UNUSUAL) return undefined;
    throw err;
  }
  return out;
}

/** The RateLimitRequest as ShouldRateLimit reads it: partially decoded, or in full (protobufjs) when unusual. */
export function decodeRateLimitRequest(buf: Buffer): unknown {
  return decodeRateLimitPartially(buf) ?? full.decode(buf);
}
