import protobuf from 'protobufjs';
import { messageType, TO_OBJECT } from './root.js';

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

/**
 * The encoding of every message object already encoded, by object: translators hand back the same object for
 * a part of the configuration that did not change (a model's routes, a version's cluster), so its bytes are
 * reused rather than converted and encoded again. Objects given to encodeMessage must not be mutated after.
 */
const encodings = new WeakMap<object, { readonly type: protobuf.Type; readonly bytes: Uint8Array }>();

/** How deep repeated message fields are encoded element by element (RouteConfiguration -> VirtualHost -> Route). */
const SPLICE_DEPTH = 2;

/**
 * Encodes `value` as `type`, reusing the bytes of objects encoded before. Down to SPLICE_DEPTH, a repeated
 * message field is encoded one element at a time (each reusable on its own) and its elements spliced between
 * the other fields in field-number order: the bytes are exactly protobufjs's encoding of the whole object.
 * A spliced message is returned as its chunks (not copied into one buffer: a route configuration of every
 * model is tens of MB, copied once, by the caller, where it is needed whole).
 */
function encodeChunks(type: protobuf.Type, value: Record<string, unknown>, path: string, depth: number): Uint8Array[] {
  const hit = encodings.get(value);
  if (hit && hit.type === type) return [hit.bytes];
  const spliced: { field: protobuf.Field; items: Record<string, unknown>[] }[] = [];
  if (depth < SPLICE_DEPTH) {
    for (const name of Object.keys(value)) {
      const field = type.fields[name];
      const items = value[name];
      if (!field || !Array.isArray(items)) continue;
      field.resolve();
      const child = field.resolvedType;
      if (!field.repeated || field.map || !(child instanceof protobuf.Type) || typeKind(child) !== 'message' || !Array.isArray(items) || items.length === 0) continue;
      if (!items.every((item) => item !== null && typeof item === 'object' && !(item instanceof Uint8Array) && !Array.isArray(item))) continue;
      spliced.push({ field, items: items as Record<string, unknown>[] });
    }
    spliced.sort((a, b) => a.field.id - b.field.id);
  }
  if (spliced.length === 0) {
    assertKnownFields(type, value, path);
    const bytes = type.encode(type.fromObject(value)).finish();
    encodings.set(value, { type, bytes });
    return [bytes];
  }
  const splicedNames = new Set(spliced.map((s) => s.field.name));
  const rest: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) if (!splicedNames.has(k)) rest[k] = v;
  assertKnownFields(type, rest, path);
  // The other fields, cut at each spliced field's number: [below the first, between first and second, ..., above the last].
  const bins: Record<string, unknown>[] = spliced.map(() => ({}));
  bins.push({});
  for (const [k, v] of Object.entries(rest)) {
    const field = type.fields[k];
    if (!field) continue; // a oneof's name: protobufjs ignores it too
    let bin = 0;
    while (bin < spliced.length && (spliced[bin] as { field: protobuf.Field }).field.id < field.id) bin++;
    (bins[bin] as Record<string, unknown>)[k] = v;
  }
  const chunks: Uint8Array[] = [];
  const writeBin = (bin: Record<string, unknown>): void => {
    if (Object.keys(bin).length > 0) chunks.push(type.encode(type.fromObject(bin)).finish());
  };
  spliced.forEach(({ field, items }, i) => {
    writeBin(bins[i] as Record<string, unknown>);
    const where = path ? `${path}.${field.name}` : field.name;
    const child = field.resolvedType as protobuf.Type;
    const tag = (field.id << 3) | 2;
    items.forEach((item, j) => {
      const element = encodeChunks(child, item, `${where}[${j}]`, depth + 1);
      chunks.push(tagAndLength(tag, byteLength(element)));
      // Not a spread: a virtual host of every model is tens of thousands of chunks.
      for (const c of element) chunks.push(c);
    });
  });
  writeBin(bins[spliced.length] as Record<string, unknown>);
  return chunks;
}

function byteLength(chunks: readonly Uint8Array[]): number {
  let n = 0;
  for (const c of chunks) n += c.length;
  return n;
}

/** A length-delimited field's key and length (varints), as bytes. */
function tagAndLength(tag: number, length: number): Uint8Array {
  return protobuf.Writer.create().uint32(tag).uint32(length).finish();
}

/** Encodes a plain object as the named message, refusing unknown fields. */
export function encodeMessage(typeNameOrUrl: string, value: object): Uint8Array {
  const chunks = encodeChunks(messageType(typeNameOrUrl), value as Record<string, unknown>, '', 0);
  return chunks.length === 1 ? (chunks[0] as Uint8Array) : Buffer.concat(chunks);
}

/**
 * Encodes a plain object as the named message and as a google.protobuf.Any holding it, in one buffer (the
 * message is a view into the Any's bytes); `digest` is given the message's chunks as they are written.
 */
export function encodeMessageAndAny(typeUrl: string, value: object, digest?: (chunk: Uint8Array) => void): { body: Uint8Array; any: Uint8Array } {
  const chunks = encodeChunks(messageType(typeUrl), value as Record<string, unknown>, '', 0);
  const length = byteLength(chunks);
  const head = protobuf.Writer.create().uint32((1 << 3) | 2).string(typeUrl).uint32((2 << 3) | 2).uint32(length).finish();
  const any = Buffer.allocUnsafe(head.length + length);
  any.set(head, 0);
  let at = head.length;
  for (const c of chunks) {
    digest?.(c);
    any.set(c, at);
    at += c.length;
  }
  return { body: any.subarray(head.length), any };
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
  return { '@type': typeUrl, ...value };
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
  for (const [k, v] of Object.entries(value)) if (v !== undefined) fields[k] = structValue(v);
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
