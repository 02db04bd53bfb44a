import { messageType } from '../../src/proto/root.js';
import { lengthDelimited, Reader, UNUSUAL } from './wire-reader.js';

/**
 * A partial decoder of ext_authz's CheckRequest: only what Check reads (attributes.request.http's id,
 * method, headers, path, host, scheme and protocol, and attributes.context_extensions), every other field
 * skipped by its wire type without being decoded (the source and destination addresses, the request time,
 * the body, metadata, TLS session). The full protobufjs decode built objects for all of them on every call.
 *
 * Anything unusual hands the whole message to the full decoder, so that what Check sees is never the
 * product of a second, different reading of odd input: a field of a known number with another wire type,
 * a singular message given twice (protobufjs keeps the last one, unmerged), a group, a length past the end,
 * an over-long varint, the `header_map` form of the headers (Envoy's `encode_raw_headers`), and any error.
 * Strings are read as protobufjs reads them (Buffer's UTF-8 decoding of the same bytes); a map entry missing
 * its key or value reads as '' as there, and a repeated key keeps its last value.
 */

const full = messageType('envoy.service.auth.v3.CheckRequest');

/** The fields of a decoded HttpRequest that Check reads. Absent strings are '' as in a protobufjs message. */
export interface PartialHttpRequest {
  id: string;
  method: string;
  headers: Record<string, string>;
  path: string;
  host: string;
  scheme: string;
  protocol: string;
}

export interface PartialCheckRequest {
  attributes?: {
    request?: { http?: PartialHttpRequest };
    context_extensions: Record<string, string>;
  };
}

function http(r: Reader, end: number): PartialHttpRequest {
  const out: PartialHttpRequest = { id: '', method: '', headers: {}, path: '', host: '', scheme: '', protocol: '' };
  while (r.pos < end) {
    const tag = r.tag();
    const field = tag >>> 3;
    // 1 id, 2 method, 3 headers, 4 path, 5 host, 6 scheme, 10 protocol: strings (and the map) Check reads.
    if (field <= 6 || field === 10) {
      if (!lengthDelimited(tag)) throw UNUSUAL;
      if (field === 3) r.entry(end, out.headers);
      else if (field === 1) out.id = r.string(end);
      else if (field === 2) out.method = r.string(end);
      else if (field === 4) out.path = r.string(end);
      else if (field === 5) out.host = r.string(end);
      else if (field === 6) out.scheme = r.string(end);
      else if (field === 10) out.protocol = r.string(end);
      else throw UNUSUAL;
    } else if (field === 13) {
      throw UNUSUAL; // header_map: the headers in the other form.
    } else {
      r.skip(tag & 7, end);
    }
  }
  return out;
}

function request(r: Reader, end: number): { http?: PartialHttpRequest } {
  const out: { http?: PartialHttpRequest } = {};
  while (r.pos < end) {
    const tag = r.tag();
    if (tag >>> 3 === 2) {
      if (!lengthDelimited(tag) || out.http) throw UNUSUAL;
      const stop = r.delimited(end);
      out.http = http(r, stop);
    } else {
      r.skip(tag & 7, end);
    }
  }
  return out;
}

function attributes(r: Reader, end: number): NonNullable<PartialCheckRequest['attributes']> {
  const out: NonNullable<PartialCheckRequest['attributes']> = { context_extensions: {} };
  while (r.pos < end) {
    const tag = r.tag();
    const field = tag >>> 3;
    if (field === 4) {
      if (!lengthDelimited(tag) || out.request) throw UNUSUAL;
      const stop = r.delimited(end);
      out.request = request(r, stop);
    } else if (field === 10) {
      if (!lengthDelimited(tag)) throw UNUSUAL;
      r.entry(end, out.context_extensions);
    } else {
      r.skip(tag & 7, end);
    }
  }
  return out;
}

/** The partial decode, or undefined when the message is unusual (the caller then decodes it in full). */
export function decodeCheckPartially(buf: Buffer): PartialCheckRequest | undefined {
  const r = new Reader(buf);
  const out: PartialCheckRequest = {};
  try {
    while (r.pos < buf.length) {
      const tag = r.tag();
      if (tag >>> 3 === 1) {
        if (!lengthDelimited(tag) || out.attributes) return undefined;
        const stop = r.delimited(buf.length);
        out.attributes = attributes(r, stop);
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

/** The CheckRequest as Check reads it: partially decoded, or in full (protobufjs) when it is unusual. */
export function decodeCheckRequest(buf: Buffer): unknown {
  return decodeCheckPartially(buf) ?? full.decode(buf);
}
