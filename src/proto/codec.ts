import protobuf from 'protobufjs';
import { encodeDirect, encodeDirectFramed } from './direct.js';
import { messageType, TO_OBJECT } from './root.js';
import { segments } from '../resources/segments.js';
import { copyInto } from '../objects.js';

/**
 * Encoding and decoding of Envoy messages given as plain objects (snake_case fields, nested Any values in the
 * `{ '@type': url, ...fields }` form Envoy's YAML uses).
 */

export class UnknownFieldError extends Error {
  constructor(readonly path: string, readonly typeName: string) {
    super(`unknown field ${path} (not in ${typeName})`);
    this.name = 'UnknownFieldError';
  }
}

/**
 * Throws UnknownFieldError for any key that is not a field of the message (protobufjs silently drops them,
 * and a dropped setting is a silent misconfiguration of every Envoy).
 */
export function assertKnownFields(type: protobuf.Type, value: unknown, path = ''): void {
  if (value === null || typeof value !== 'object' || value instanceof Uint8Array) return;
  const obj = value as Record<string, unknown>;
  // Reflection's fullName is recomputed from the parents on every read: compared once per type, not per object.
  const kind = typeKind(type);
  if (kind === 'any' && typeof obj['@type'] === 'string') {
    const inner = messageType(obj['@type']);
    const { '@type': _ignored, ...rest } = obj;
    assertKnownFields(inner, rest, path);
    return;
  }
  if (kind === 'struct') return;
  for (const [key, fieldValue] of Object.entries(obj)) {
    const field = type.fields[key];
    const where = path ? `${path}.${key}` : key;
    if (!field) {
      if (type.oneofs?.[key]) continue;
      throw new UnknownFieldError(where, type.fullName.slice(1));
    }
    field.resolve();
    const child = field.resolvedType;
    if (!(child instanceof protobuf.Type) || fieldValue === null || fieldValue === undefined) continue;
    if (field.map) {
      for (const [k, v] of Object.entries(fieldValue as Record<string, unknown>)) assertKnownFields(child, v, `${where}[${k}]`);
    } else if (field.repeated && Array.isArray(fieldValue)) {
      fieldValue.forEach((item, i) => assertKnownFields(child, item, `${where}[${i}]`));
    } else {
      assertKnownFields(child, fieldValue, where);
    }
  }
}

type TypeKind = 'any' | 'struct' | 'wellKnown' | 'message';
const kinds = new WeakMap<protobuf.Type, TypeKind>();

function typeKind(type: protobuf.Type): TypeKind {
  let kind = kinds.get(type);
  if (kind === undefined) {
    const name = type.fullName;
    kind = name === '.google.protobuf.Any' ? 'any' : name === '.google.protobuf.Struct' || name === '.google.protobuf.Value' ? 'struct' : name.startsWith('.google.protobuf.') ? 'wellKnown' : 'message';
    kinds.set(type, kind);
  }
  return kind;
}

/** A message in plain-object form (not bytes, not a list). */
const isMessageObject = (item: unknown): boolean => item !== null && typeof item === 'object' && !(item instanceof Uint8Array) && !Array.isArray(item);

/**
 * A piece of an encoded message: the encoding of a message object encoded before (kept by object, shared by
 * every message that holds it, with a digest made the first time one is needed), or bytes written for this
 * message alone (its other fields, the key and length of a spliced element).
 */
export interface Part {
  readonly bytes: Uint8Array;
  /** Set on kept encodings only. */
  readonly kept?: true;
  digest?: Uint8Array;
}

interface KeptEncoding extends Part {
  readonly type: protobuf.Type;
  readonly kept: true;
  /** The key and length that frame this encoding as an element of a repeated field, by field key. */
  framed?: { readonly tag: number; readonly part: Part };
}

/**
 * The encoding of every message object already encoded, by object: translators hand back the same object for
 * a part of the configuration that did not change (a model's routes, a version's cluster), so its bytes are
 * reused rather than converted and encoded again. Objects given to encodeMessage must not be mutated after.
 */
const encodings = new WeakMap<object, KeptEncoding>();

/** How deep repeated message fields are encoded element by element (RouteConfiguration -> VirtualHost -> Route). */
const SPLICE_DEPTH = 2;

/**
 * Encodes `value` as `type`, reusing the bytes of objects encoded before. Down to SPLICE_DEPTH, a repeated
 * message field is encoded one element at a time (each reusable on its own) and its elements spliced between
 * the other fields in field-number order: the bytes are exactly protobufjs's encoding of the whole object.
 * A spliced message is returned as its parts (not copied into one buffer: a route configuration of every
 * model is tens of MB, copied once, and only when it is sent).
 */
function encodeParts(type: protobuf.Type, value: Record<string, unknown>, path: string, depth: number, out: Part[], keep = true): void {
  const hit = encodings.get(value);
  if (hit && hit.type === type) {
    out.push(hit);
    return;
  }
  const spliced: { field: protobuf.Field; items: Record<string, unknown>[] }[] = [];
  if (depth < SPLICE_DEPTH) {
    for (const name of Object.keys(value)) {
      const field = type.fields[name];
      const items = value[name];
      if (!field || !Array.isArray(items)) continue;
      field.resolve();
      const child = field.resolvedType;
      if (!field.repeated || field.map || !(child instanceof protobuf.Type) || typeKind(child) !== 'message' || !Array.isArray(items) || items.length === 0) continue;
      // A list the translator made of kept segments is not walked here (40,000 routes per change): each
      // segment's elements are checked when the segment is first encoded (keptSegment).
      if (!segments(items) && !items.every(isMessageObject)) continue;
      spliced.push({ field, items: items as Record<string, unknown>[] });
    }
    spliced.sort((a, b) => a.field.id - b.field.id);
  }
  if (spliced.length === 0) {
    const bytes = encodeWhole(type, value, path);
    if (!keep) {
      out.push({ bytes });
      return;
    }
    const kept: KeptEncoding = { type, bytes, kept: true };
    encodings.set(value, kept);
    out.push(kept);
    return;
  }
  const splicedNames = new Set(spliced.map((s) => s.field.name));
  // The other fields, cut at each spliced field's number: [below the first, between first and second, ..., above the last].
  // Each bin is checked for unknown fields as it is encoded; a name that is no field is refused here.
  const bins: Record<string, unknown>[] = spliced.map(() => ({}));
  bins.push({});
  for (const [k, v] of Object.entries(value)) {
    if (splicedNames.has(k)) continue;
    const field = type.fields[k];
    if (!field) {
      if (type.oneofs?.[k]) continue; // a oneof's name: protobufjs ignores it too
      throw new UnknownFieldError(path ? `${path}.${k}` : k, type.fullName.slice(1));
    }
    let bin = 0;
    while (bin < spliced.length && (spliced[bin] as { field: protobuf.Field }).field.id < field.id) bin++;
    (bins[bin] as Record<string, unknown>)[k] = v;
  }
  const writeBin = (bin: Record<string, unknown>): void => {
    if (Object.keys(bin).length > 0) out.push({ bytes: encodeWhole(type, bin, path) });
  };
  spliced.forEach(({ field, items }, i) => {
    writeBin(bins[i] as Record<string, unknown>);
    const where = path ? `${path}.${field.name}` : field.name;
    const child = field.resolvedType as protobuf.Type;
    const tag = (field.id << 3) | 2;
    const kept = segments(items);
    if (kept) {
      // A list made of kept lists: each kept list's elements, framed, are one kept part.
      let j = 0;
      for (const segment of kept) {
        out.push(keptSegment(child, segment, tag, where, j));
        j += segment.length;
      }
      return;
    }
    items.forEach((item, j) => {
      const hit = encodings.get(item);
      if (hit && hit.type === child) {
        // A kept element: its frame is kept with it.
        if (hit.framed?.tag !== tag) hit.framed = { tag, part: { bytes: tagAndLength(tag, hit.bytes.length) } };
        out.push(hit.framed.part, hit);
        return;
      }
      const element: Part[] = [];
      encodeParts(child, item, `${where}[${j}]`, depth + 1, element);
      out.push({ bytes: tagAndLength(tag, byteLength(element)) });
      for (const p of element) out.push(p);
    });
  });
  writeBin(bins[spliced.length] as Record<string, unknown>);
}

/** Each kept list's framed elements, by list, for one element type and field key. */
const segmentEncodings = new WeakMap<readonly object[], KeptEncoding & { readonly tag: number }>();

function keptSegment(type: protobuf.Type, segment: readonly object[], tag: number, where: string, first: number): Part {
  const hit = segmentEncodings.get(segment);
  if (hit && hit.type === type && hit.tag === tag) return hit;
  const inner = segments(segment);
  if (inner) return nestedSegment(type, segment, inner, tag, where, first);
  const bad = segment.findIndex((item) => !isMessageObject(item));
  if (bad >= 0) throw new Error(`${where}[${first + bad}] is not a message (a kept segment holds only messages)`);
  const direct = encodeDirectFramed(type, segment, tag, (item) => {
    const known = encodings.get(item);
    return known && known.type === type ? known.bytes : undefined;
  });
  if (direct) {
    const kept = { type, tag, bytes: direct, kept: true as const };
    segmentEncodings.set(segment, kept);
    return kept;
  }
  const chunks: Uint8Array[] = [];
  segment.forEach((item, i) => {
    const element: Part[] = [];
    // Not kept one by one as well: the segment keeps them (a route configuration's routes are tens of MB).
    encodeParts(type, item as Record<string, unknown>, `${where}[${first + i}]`, SPLICE_DEPTH, element, false);
    chunks.push(tagAndLength(tag, byteLength(element)));
    for (const p of element) chunks.push(p.bytes);
  });
  const kept = { type, tag, bytes: Buffer.concat(chunks), kept: true as const };
  segmentEncodings.set(segment, kept);
  return kept;
}

/**
 * A kept list made of kept lists (a group of models' routes): its segments' encodings joined into one kept
 * part. Each segment's encoding then becomes a view into the joined bytes, so a group made again after one
 * model's change copies the others' bytes rather than keeping a second copy of them.
 */
function nestedSegment(type: protobuf.Type, segment: readonly object[], inner: readonly (readonly object[])[], tag: number, where: string, first: number): Part {
  const parts: KeptEncoding[] = [];
  let j = first;
  for (const s of inner) {
    parts.push(keptSegment(type, s, tag, where, j) as KeptEncoding);
    j += s.length;
  }
  const bytes = Buffer.concat(parts.map((p) => p.bytes));
  let at = 0;
  inner.forEach((s, i) => {
    const length = (parts[i] as KeptEncoding).bytes.length;
    segmentEncodings.set(s, { type, tag, bytes: bytes.subarray(at, at + length), kept: true });
    at += length;
  });
  const kept = { type, tag, bytes, kept: true as const };
  segmentEncodings.set(segment, kept);
  return kept;
}

/** The encoded length of parts. */
export function byteLength(parts: readonly Part[]): number {
  let n = 0;
  for (const p of parts) n += p.bytes.length;
  return n;
}

/**
 * A whole message's bytes: written directly when the encoder knows every value (src/proto/direct.ts), else
 * checked for unknown fields and converted by protobufjs.
 */
function encodeWhole(type: protobuf.Type, value: Record<string, unknown>, path: string): Uint8Array {
  const direct = encodeDirect(type, value);
  if (direct) return direct;
  assertKnownFields(type, value, path);
  return type.encode(type.fromObject(value)).finish();
}

/** The bytes of an unsigned 32-bit varint. */
export const varintSize = (v: number): number => (v < 0x80 ? 1 : v < 0x4000 ? 2 : v < 0x200000 ? 3 : v < 0x10000000 ? 4 : 5);

/** Writes the unsigned 32-bit varint `v` into `out` at `at`; returns the offset after it. */
export function writeVarint(out: Uint8Array, at: number, v: number): number {
  while (v > 127) {
    out[at++] = (v & 127) | 128;
    v >>>= 7;
  }
  out[at++] = v;
  return at;
}

/** A length-delimited field's key and length (varints), as bytes. */
function tagAndLength(tag: number, length: number): Uint8Array {
  const out = Buffer.allocUnsafe(10);
  return out.subarray(0, writeVarint(out, writeVarint(out, 0, tag), length));
}

/** Encodes a plain object as the named message, refusing unknown fields. */
export function encodeMessage(typeNameOrUrl: string, value: object): Uint8Array {
  const parts = encodeMessageParts(typeNameOrUrl, value);
  return parts.length === 1 ? (parts[0] as Part).bytes : Buffer.concat(parts.map((p) => p.bytes));
}

/** Encodes a plain object as the named message, as parts in order (one part: a message encoded whole). */
export function encodeMessageParts(typeNameOrUrl: string, value: object): readonly Part[] {
  const parts: Part[] = [];
  // The message itself is not kept by object (its caller keeps what it made of it: a snapshot keeps the
  // resource by message); the messages inside it are.
  const type = messageType(typeNameOrUrl);
  const text = textParts.get(value);
  if (text) textMessageParts(type, value as Record<string, unknown>, text.field, text.parts, parts);
  else encodeParts(type, value as Record<string, unknown>, '', 0, parts, false);
  return parts;
}

/** Messages one of whose string fields is given as the UTF-8 parts of its text (withTextParts). */
const textParts = new WeakMap<object, { readonly field: string; readonly parts: readonly Part[] }>();

/**
 * Records that the string field `field` of `message` is the UTF-8 text of `parts` joined (the FilterPolicy's
 * policy JSON, assembled from kept per-group texts): encodeMessageParts splices those parts as they are, so a
 * long text made of mostly the same pieces is neither joined nor encoded again, and its kept parts keep their
 * digests. Returns `message`.
 */
export function withTextParts<T extends object>(message: T, field: string, parts: readonly Part[]): T {
  textParts.set(message, { field, parts });
  return message;
}

function textMessageParts(type: protobuf.Type, value: Record<string, unknown>, name: string, text: readonly Part[], out: Part[]): void {
  const field = type.fields[name];
  if (!field || field.type !== 'string' || field.repeated) throw new Error(`${name} is not a string field of ${type.fullName.slice(1)}`);
  // The other fields below and above the text's number, each encoded whole (checked for unknown fields there).
  const below: Record<string, unknown> = {};
  const above: Record<string, unknown> = {};
  for (const k of Object.keys(value)) {
    if (k === name) continue;
    const other = type.fields[k];
    ((other?.id ?? 0) < field.id ? below : above)[k] = value[k];
  }
  if (Object.keys(below).length > 0) out.push({ bytes: encodeWhole(type, below, '') });
  out.push({ bytes: tagAndLength((field.id << 3) | 2, byteLength(text)) });
  for (const p of text) out.push(p);
  if (Object.keys(above).length > 0) out.push({ bytes: encodeWhole(type, above, '') });
}

/** The bytes before the message in a google.protobuf.Any holding a message of `length` bytes: the type URL, the value's key and length. */
export function anyHead(typeUrl: string, length: number): Uint8Array {
  return protobuf.Writer.create().uint32((1 << 3) | 2).string(typeUrl).uint32((2 << 3) | 2).uint32(length).finish();
}

/** The bytes of a google.protobuf.Any holding the message of `parts`, in one buffer (the message a view into it). */
export function anyOfParts(typeUrl: string, parts: readonly Part[]): { body: Uint8Array; any: Uint8Array } {
  const length = byteLength(parts);
  const head = anyHead(typeUrl, length);
  const any = Buffer.allocUnsafe(head.length + length);
  any.set(head, 0);
  let at = head.length;
  for (const p of parts) {
    any.set(p.bytes, at);
    at += p.bytes.length;
  }
  return { body: any.subarray(head.length), any };
}

/**
 * What a spliced message's content hash is taken over: each kept part by its digest (made once per kept
 * encoding), every other part by its bytes. A function of the message alone (which parts are kept follows
 * from its shape), and a change to one route of a large route configuration costs a walk of digests, not a
 * hash of every byte.
 */
export function partsDigestInput(parts: readonly Part[], digest: (bytes: Uint8Array) => Uint8Array): Uint8Array {
  let size = 0;
  for (const p of parts) size += p.kept ? 17 : 5 + p.bytes.length;
  const out = Buffer.allocUnsafe(size);
  let at = 0;
  for (const p of parts) {
    if (p.kept) {
      const d = (p.digest ??= digest(p.bytes));
      out[at++] = 1;
      out.set(d, at);
      at += 16;
    } else {
      out[at++] = 0;
      out.writeUInt32BE(p.bytes.length, at);
      at += 4;
      out.set(p.bytes, at);
      at += p.bytes.length;
    }
  }
  return out;
}

/** Decodes bytes into a plain object in proto-loader's shape (string longs/enums, defaults present). */
export function decodeMessage<T = Record<string, unknown>>(typeNameOrUrl: string, bytes: Uint8Array): T {
  const type = messageType(typeNameOrUrl);
  return type.toObject(type.decode(bytes), TO_OBJECT) as T;
}

/** The bytes of a google.protobuf.Any holding an already encoded message. */
export function encodeAny(typeUrl: string, value: Uint8Array): Uint8Array {
  const w = protobuf.Writer.create();
  w.uint32((1 << 3) | 2).string(typeUrl);
  w.uint32((2 << 3) | 2).bytes(value);
  return w.finish();
}

/** A plain object packed as an Any in the `@type` form, for nesting typed_config in translator output. */
export function typed<T extends object>(typeUrl: string, value: T): T & { '@type': string } {
  // Not a spread: one per per-filter config and cluster extension at every build (src/objects.ts).
  return copyInto({ '@type': typeUrl }, value) as T & { '@type': string };
}

/** A google.protobuf.Duration in plain-object form from milliseconds. */
export function duration(ms: number): { seconds: string; nanos: number } {
  const seconds = Math.floor(ms / 1000);
  return { seconds: String(seconds), nanos: Math.round((ms - seconds * 1000) * 1e6) };
}

// protobufjs' built-in google.protobuf.Value keeps camelCase field names even when keepCase is on.
type StructValue =
  | { nullValue: 'NULL_VALUE' }
  | { numberValue: number }
  | { stringValue: string }
  | { boolValue: boolean }
  | { structValue: { fields: Record<string, StructValue> } }
  | { listValue: { values: StructValue[] } };

/** A google.protobuf.Struct in plain-object form from a JSON-like value. */
export function struct(value: Record<string, unknown>): { fields: Record<string, StructValue> } {
  const fields: Record<string, StructValue> = {};
  // A key loop, not Object.entries (an array per entry): a struct per cluster and endpoint at every build.
  for (const k in value) {
    if (!Object.hasOwn(value, k)) continue;
    const v = value[k];
    if (v !== undefined) fields[k] = structValue(v);
  }
  return { fields };
}

function structValue(v: unknown): StructValue {
  if (v === null) return { nullValue: 'NULL_VALUE' };
  if (typeof v === 'number') return { numberValue: v };
  if (typeof v === 'string') return { stringValue: v };
  if (typeof v === 'boolean') return { boolValue: v };
  if (Array.isArray(v)) return { listValue: { values: v.map(structValue) } };
  if (typeof v === 'object') return { structValue: struct(v as Record<string, unknown>) };
  // bigint, symbol, function: not JSON; recorded by their string form.
  return { stringValue: typeof v === 'bigint' ? v.toString() : typeof v === 'symbol' ? v.toString() : 'function' };
}

/** A JSON-like value from a decoded google.protobuf.Struct (proto-loader shape). */
export function fromStruct(s: unknown): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const fields = (s as { fields?: Record<string, unknown> } | null | undefined)?.fields ?? {};
  for (const [k, v] of Object.entries(fields)) out[k] = fromStructValue(v);
  return out;
}

function fromStructValue(v: unknown): unknown {
  const val = (v ?? {}) as Record<string, unknown>;
  if (val.structValue != null) return fromStruct(val.structValue);
  if (val.listValue != null) return ((val.listValue as { values?: unknown[] }).values ?? []).map(fromStructValue);
  if (val.stringValue != null) return val.stringValue;
  if (val.numberValue != null) return Number(val.numberValue);
  if (val.boolValue != null) return val.boolValue;
  return null;
}
