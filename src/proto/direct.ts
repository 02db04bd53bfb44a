import protobuf from 'protobufjs';
import { messageType } from './root.js';

/**
 * A direct encoder: writes a plain object (the translators' snake_case form, Any values as `@type` objects)
 * straight into bytes, field by field from the message's reflection, without protobufjs's `fromObject`
 * (a second object tree per resource) or a separate unknown-field walk. Its bytes are exactly protobufjs's
 * (`type.encode(type.fromObject(value))`): fields in number order, a field written whenever the object holds
 * it (not null), zero values included, map entries in key order, Any as `type_url` then `value`.
 *
 * It handles only what it can encode with certainty: an unknown field, a value of another JavaScript type
 * than the field's (which fromObject would convert, or drop), an enum name the enum lacks, a 64-bit integer
 * outside the safe range, a group or a required field... and the message is given back undefined, for the
 * generic path (which refuses the unknown field by name, or converts the value as it always did). Nothing is
 * ever silently dropped here.
 */

/** Thrown inside the encoder when a value is not one it handles (one object, made once); never escapes this module. */
class NotDirect extends Error {}
const NOT_DIRECT = new NotDirect('not a value the direct encoder handles');

const enum Kind {
  Double,
  Float,
  Int32,
  Uint32,
  Int64,
  Uint64,
  Bool,
  String,
  Bytes,
  Enum,
  Message,
  /** Anything else (sint32, fixed32, sfixed32, the 64-bit ones but int64 and uint64): the generic path. */
  Other,
}

interface FieldPlan {
  readonly name: string;
  readonly id: number;
  readonly kind: Kind;
  /** The field's key (number and wire type) as written before each value; for packed fields and maps, wire type 2. */
  readonly key: number;
  readonly repeated: boolean;
  readonly packed: boolean;
  readonly map: boolean;
  /** A map's value kind (the key is a string: other key types go the generic way). */
  readonly valueKind: Kind;
  readonly enumValues: Readonly<Record<string, number>> | undefined;
  readonly field: protobuf.Field;
}

interface TypePlan {
  readonly type: protobuf.Type;
  readonly any: boolean;
  /** A group or required field somewhere in the type itself: the generic path. */
  readonly unsupported: boolean;
  readonly fields: ReadonlyMap<string, FieldPlan>;
  readonly oneofs: ReadonlySet<string>;
  /** The type's generated writer (made the first time an object of the type is written). */
  write?: BodyWriter;
}

/** Writes an object's fields in number order (generated per type, see bodyWriter); throws NOT_DIRECT for a key it does not know. */
type BodyWriter = (v: Record<string, unknown>, anyInner: boolean) => void;

const plans = new WeakMap<protobuf.Type, TypePlan>();

function kindOf(typeName: string, resolved: protobuf.ReflectionObject | null): Kind {
  if (resolved instanceof protobuf.Type) return Kind.Message;
  if (resolved instanceof protobuf.Enum) return Kind.Enum;
  switch (typeName) {
    case 'double': return Kind.Double;
    case 'float': return Kind.Float;
    case 'int32': return Kind.Int32;
    case 'uint32': return Kind.Uint32;
    case 'int64': return Kind.Int64;
    case 'uint64': return Kind.Uint64;
    case 'bool': return Kind.Bool;
    case 'string': return Kind.String;
    case 'bytes': return Kind.Bytes;
    default: return Kind.Other;
  }
}

/** The wire type a kind is written with (packed and length-delimited aside). */
function wireType(kind: Kind): number {
  switch (kind) {
    case Kind.Double: return 1;
    case Kind.Float: return 5;
    case Kind.String: case Kind.Bytes: case Kind.Message: return 2;
    default: return 0;
  }
}

function planOf(type: protobuf.Type): TypePlan {
  let plan = plans.get(type);
  if (plan) return plan;
  const fields = new Map<string, FieldPlan>();
  let unsupported = false;
  for (const field of type.fieldsArray) {
    field.resolve();
    if (field.required || field.delimited) unsupported = true;
    const resolved = field.resolvedType;
    const map = field.map;
    const kind = map ? Kind.Message : kindOf(field.type, resolved);
    const valueKind = map ? kindOf(field.type, resolved) : kind;
    if (map && (field as unknown as protobuf.MapField).keyType !== 'string') unsupported = true;
    const packed = !map && field.repeated && field.packed && kind !== Kind.String && kind !== Kind.Bytes && kind !== Kind.Message && kind !== Kind.Other;
    const key = ((field.id << 3) | (map || packed ? 2 : wireType(kind))) >>> 0;
    const enumValues = resolved instanceof protobuf.Enum ? resolved.values : undefined;
    fields.set(field.name, { name: field.name, id: field.id, kind, key, repeated: field.repeated && !map, packed, map, valueKind, enumValues, field });
  }
  plan = { type, any: type.fullName === '.google.protobuf.Any', unsupported, fields, oneofs: new Set(Object.keys(type.oneofs ?? {})) };
  plans.set(type, plan);
  return plan;
}

function childPlan(f: FieldPlan): TypePlan {
  return planOf(f.field.resolvedType as protobuf.Type);
}

// --- the output buffer (one, reused: the encoder never runs inside itself) ---

let buf = Buffer.allocUnsafeSlow(1 << 16);
let pos = 0;

function ensure(n: number): void {
  if (pos + n <= buf.length) return;
  let size = buf.length * 2;
  while (size < pos + n) size *= 2;
  const next = Buffer.allocUnsafeSlow(size);
  buf.copy(next, 0, 0, pos);
  buf = next;
}

function varint32(v: number): void {
  ensure(5);
  while (v > 127) {
    buf[pos++] = (v & 127) | 128;
    v >>>= 7;
  }
  buf[pos++] = v;
}

/** protobufjs's 64-bit varint of (lo, hi). */
function varint64(lo: number, hi: number): void {
  ensure(10);
  while (hi) {
    buf[pos++] = (lo & 127) | 128;
    lo = ((lo >>> 7) | (hi << 25)) >>> 0;
    hi >>>= 7;
  }
  while (lo > 127) {
    buf[pos++] = (lo & 127) | 128;
    lo >>>= 7;
  }
  buf[pos++] = lo;
}

function int32(v: number): void {
  if (v < 0) varint64(v >>> 0, 0xffffffff);
  else varint32(v);
}

const isWellFormed = (s: string): boolean => (s as unknown as { isWellFormed(): boolean }).isWellFormed();

function string(s: string): void {
  const n = s.length;
  // ASCII, the usual case: one byte per character, written in place.
  if (n < 128) {
    ensure(n + 1);
    const start = pos;
    buf[pos++] = n;
    let i = 0;
    for (; i < n; i++) {
      const c = s.charCodeAt(i);
      if (c >= 128) break;
      buf[pos++] = c;
    }
    if (i === n) return;
    pos = start;
  }
  if (!isWellFormed(s)) throw NOT_DIRECT; // protobufjs and Buffer differ on lone surrogates
  const len = Buffer.byteLength(s, 'utf8');
  varint32(len);
  ensure(len);
  pos += buf.write(s, pos, len, 'utf8');
}

/** Starts a length-delimited value: one byte kept for its length (moved up if the length needs more). */
function openDelimited(): number {
  ensure(1);
  return pos++;
}

function closeDelimited(at: number): void {
  const len = pos - at - 1;
  if (len < 128) {
    buf[at] = len;
    return;
  }
  let extra = 0;
  for (let v = len >>> 7; v > 0; v >>>= 7) extra++;
  ensure(extra);
  buf.copyWithin(at + 1 + extra, at + 1, pos);
  pos += extra;
  let v = len;
  let p = at;
  while (v > 127) {
    buf[p++] = (v & 127) | 128;
    v >>>= 7;
  }
  buf[p] = v;
}

// --- values ---

const isInt = (v: unknown, min: number, max: number): v is number => typeof v === 'number' && Number.isInteger(v) && v >= min && v <= max;
const DECIMAL = /^-?\d{1,15}$/;

/** A 64-bit integer given as a safe integer or a short decimal string (Duration seconds, ...), else not direct. */
function int64Value(v: unknown, unsigned: boolean): number {
  let n: number;
  if (typeof v === 'number') n = v;
  else if (typeof v === 'string' && DECIMAL.test(v)) n = Number(v);
  else throw NOT_DIRECT;
  if (!Number.isSafeInteger(n) || (unsigned && n < 0)) throw NOT_DIRECT;
  return n === 0 ? 0 : n; // -0
}

function scalar(kind: Kind, v: unknown, f: FieldPlan): void {
  switch (kind) {
    case Kind.String:
      if (typeof v !== 'string') throw NOT_DIRECT;
      string(v);
      return;
    case Kind.Bool:
      if (typeof v !== 'boolean') throw NOT_DIRECT;
      ensure(1);
      buf[pos++] = v ? 1 : 0;
      return;
    case Kind.Uint32:
      if (!isInt(v, 0, 0xffffffff)) throw NOT_DIRECT;
      varint32(v);
      return;
    case Kind.Int32:
      if (!isInt(v, -0x80000000, 0x7fffffff)) throw NOT_DIRECT;
      int32(v);
      return;
    case Kind.Enum: {
      let n: number;
      if (typeof v === 'string') {
        const values = f.enumValues as Readonly<Record<string, number>>;
        if (!Object.prototype.hasOwnProperty.call(values, v)) throw NOT_DIRECT;
        n = values[v] as number;
      } else if (isInt(v, -0x80000000, 0x7fffffff)) n = v;
      else throw NOT_DIRECT;
      int32(n);
      return;
    }
    case Kind.Int64:
    case Kind.Uint64: {
      const n = int64Value(v, kind === Kind.Uint64);
      if (n >= 0 && n <= 0xffffffff) varint32(n);
      else {
        const bits = protobuf.util.LongBits.fromNumber(n);
        varint64(bits.lo >>> 0, bits.hi >>> 0);
      }
      return;
    }
    case Kind.Double:
      if (typeof v !== 'number') throw NOT_DIRECT;
      ensure(8);
      buf.writeDoubleLE(v, pos);
      pos += 8;
      return;
    case Kind.Float:
      if (typeof v !== 'number') throw NOT_DIRECT;
      ensure(4);
      buf.writeFloatLE(v, pos);
      pos += 4;
      return;
    case Kind.Bytes: {
      if (!(v instanceof Uint8Array)) throw NOT_DIRECT;
      varint32(v.length);
      ensure(v.length);
      buf.set(v, pos);
      pos += v.length;
      return;
    }
    default:
      throw NOT_DIRECT;
  }
}

const isMessageObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Uint8Array);

/** A message value as a length-delimited field (the key written by the caller). */
function delimitedMessage(plan: TypePlan, v: unknown): void {
  if (!isMessageObject(v)) throw NOT_DIRECT;
  const at = openDelimited();
  if (plan.any) anyBody(v);
  else messageBody(plan, v, false);
  closeDelimited(at);
}

/** Per `@type`: the inner message's plan and the `type_url` protobufjs writes for it; null when the type is unknown. */
const anyTypes = new Map<string, { readonly plan: TypePlan; readonly typeUrl: string } | null>();

function anyTypeOf(url: string): { readonly plan: TypePlan; readonly typeUrl: string } | null {
  let known = anyTypes.get(url);
  if (known === undefined) {
    let inner: protobuf.Type | undefined;
    try {
      inner = messageType(url);
    } catch {
      inner = undefined;
    }
    // protobufjs: no leading dot, and a path separator even without a prefix.
    let typeUrl = url.charAt(0) === '.' ? url.slice(1) : url;
    if (!typeUrl.includes('/')) typeUrl = '/' + typeUrl;
    known = inner ? { plan: planOf(inner), typeUrl } : null;
    anyTypes.set(url, known);
  }
  return known;
}

/** An Any in the `@type` form: `type_url` (the `@type` as protobufjs normalises it) then `value` (the inner message). */
function anyBody(v: Record<string, unknown>): void {
  const url = v['@type'];
  if (typeof url !== 'string' || url === '') throw NOT_DIRECT;
  const known = anyTypeOf(url);
  if (!known) throw NOT_DIRECT;
  varint32(10);
  string(known.typeUrl);
  varint32(18);
  const at = openDelimited();
  messageBody(known.plan, v, true);
  closeDelimited(at);
}

/** How deep the message being written is (a cycle of objects is not direct). */
let depth = 0;

function messageBody(plan: TypePlan, v: Record<string, unknown>, anyInner: boolean): void {
  if (plan.unsupported || plan.any) throw NOT_DIRECT;
  if (depth > 64) throw NOT_DIRECT;
  depth++;
  (plan.write ??= bodyWriter(plan))(v, anyInner);
  depth--;
}

function writeField(f: FieldPlan, v: unknown): void {
  if (f.map) {
    if (!isMessageObject(v)) throw NOT_DIRECT;
    const child = f.valueKind === Kind.Message ? childPlan(f) : undefined;
    for (const k of Object.keys(v)) {
      if (k === '__proto__') throw NOT_DIRECT;
      const value = v[k];
      varint32(f.key);
      const at = openDelimited();
      varint32(10);
      string(k);
      if (child) {
        varint32(18);
        delimitedMessage(child, value);
      } else {
        if (f.valueKind === Kind.Enum || f.valueKind === Kind.Other) throw NOT_DIRECT;
        varint32(16 | wireType(f.valueKind));
        scalar(f.valueKind, value, f);
      }
      closeDelimited(at);
    }
    return;
  }
  if (f.repeated) {
    if (!Array.isArray(v)) throw NOT_DIRECT;
    if (v.length === 0) return;
    if (f.packed) {
      varint32(f.key);
      const at = openDelimited();
      for (const item of v) scalar(f.kind, item, f);
      closeDelimited(at);
      return;
    }
    if (f.kind === Kind.Message) {
      const child = childPlan(f);
      for (const item of v) {
        varint32(f.key);
        delimitedMessage(child, item);
      }
      return;
    }
    for (const item of v) {
      varint32(f.key);
      scalar(f.kind, item, f);
    }
    return;
  }
  varint32(f.key);
  if (f.kind === Kind.Message) delimitedMessage(childPlan(f), v);
  else scalar(f.kind, v, f);
}

// --- generated writers ---

/**
 * The largest list or map encoding a writer keeps to copy when the same object comes again in the same field
 * (the header lists every route sets, the per-filter config a model's pin routes share): small, so what the
 * writers hold on to stays a few hundred small objects.
 */
const REPEAT_MAX = 512;

/** Copies bytes kept by a writer into the output. */
function put(bytes: Uint8Array): void {
  ensure(bytes.length);
  buf.set(bytes, pos);
  pos += bytes.length;
}

/**
 * After a field of `x` was written from `start`: the first time `x` is seen in this field slot it is only
 * noted; the second time (in a row) its bytes are copied out to be put again on the next ones. A larger
 * encoding is not kept and the slot forgets its object.
 */
function seen(last: unknown[], bytes: (Uint8Array | undefined)[], i: number, x: unknown, start: number): void {
  const n = pos - start;
  if (n > REPEAT_MAX) {
    last[i] = undefined;
    bytes[i] = undefined;
  } else if (last[i] === x) {
    const out = new Uint8Array(n);
    out.set(buf.subarray(start, pos));
    bytes[i] = out;
  } else {
    last[i] = x;
    bytes[i] = undefined;
  }
}

/** What a generated writer calls (the buffer and the checks stay here, in one place). */
const writerHelpers = {
  NOT_DIRECT,
  at: (): number => pos,
  put,
  seen,
  key: varint32,
  str: (x: unknown): void => {
    if (typeof x !== 'string') throw NOT_DIRECT;
    string(x);
  },
  bool: (x: unknown): void => {
    if (typeof x !== 'boolean') throw NOT_DIRECT;
    ensure(1);
    buf[pos++] = x ? 1 : 0;
  },
  scalar,
  message: delimitedMessage,
  field: writeField,
};

/** A string as JavaScript source (a property name, a switch case). */
const literal = (s: string): string => JSON.stringify(s);

/**
 * The type's writer, as code generated from its field table (as protobufjs generates its own encoders): one
 * walk of the object's keys, each matched by a switch on the field names into a variable of its own, then
 * every field that holds a value written by its kind in number order (no lookup per key, no sort); repeated
 * and map fields by writeField. A key that is no field, no oneof name and not an Any's `@type` is not
 * direct (the generic path then refuses it by name): nothing is silently dropped.
 */
function bodyWriter(plan: TypePlan): BodyWriter {
  const fields = [...plan.fields.values()].sort((a, b) => a.id - b.id);
  const children = fields.map((f) => (f.kind === Kind.Message && !f.map ? childPlan(f) : undefined));
  const cases = fields.map((f, i) => `case ${literal(f.name)}: x${i} = v[k]; break;`);
  for (const name of plan.oneofs) if (!plan.fields.has(name)) cases.push(`case ${literal(name)}: break;`);
  if (!plan.fields.has('@type') && !plan.oneofs.has('@type')) cases.push('case "@type": if (anyInner) break; throw NOT_DIRECT;');
  const writes = fields.map((f, i) => {
    const x = `x${i}`;
    let write: string;
    if (f.repeated && !f.packed && (f.kind === Kind.Message || f.kind === Kind.String)) {
      const item = f.kind === Kind.Message ? `message(C[${i}], ${x}[j]);` : `str(${x}[j]);`;
      write = `if (!Array.isArray(${x})) throw NOT_DIRECT; for (let j = 0; j < ${x}.length; j++) { key(${f.key}); ${item} }`;
    } else if (f.map || f.repeated) write = `field(F[${i}], ${x});`;
    else if (f.kind === Kind.Message) write = `key(${f.key}); message(C[${i}], ${x});`;
    else if (f.kind === Kind.String) write = `key(${f.key}); str(${x});`;
    else if (f.kind === Kind.Bool) write = `key(${f.key}); bool(${x});`;
    else if (f.kind === Kind.Other) write = 'throw NOT_DIRECT;';
    else write = `key(${f.key}); scalar(${f.kind}, ${x}, F[${i}]);`;
    // A list or map field: the same object as the last time in this slot is its bytes again (the objects
    // given to the encoder are never mutated after; see REPEAT_MAX). Not single message fields: most hold an
    // object of their own, and the bookkeeping cost more than the hits saved (docs/performance-cold.md).
    if (f.repeated || f.map) {
      write = `if (${x} === L[${i}] && B[${i}] !== undefined) put(B[${i}]); else { const s = at(); ${write} seen(L, B, ${i}, ${x}, s); }`;
    }
    return `if (${x} !== undefined && ${x} !== null) { ${write} }`;
  });
  const declared = fields.length > 0 ? `let ${fields.map((_f, i) => `x${i}`).join(', ')};` : '';
  const source = [
    'const { NOT_DIRECT, at, put, seen, key, str, bool, scalar, message, field } = h;',
    `const L = new Array(${fields.length}).fill(undefined), B = new Array(${fields.length}).fill(undefined);`,
    'return function write(v, anyInner) {',
    declared,
    'for (const k in v) {',
    'switch (k) {',
    ...cases,
    'default: throw NOT_DIRECT;',
    '}',
    '}',
    ...writes,
    '};',
  ].join('\n');
  // eslint-disable-next-line @typescript-eslint/no-implied-eval -- the code is made from the proto's own field table, never from input
  const factory = new Function('h', 'F', 'C', source) as (h: typeof writerHelpers, f: readonly FieldPlan[], c: readonly (TypePlan | undefined)[]) => BodyWriter;
  return factory(writerHelpers, fields, children);
}

/** Runs one encoding from an empty buffer; the bytes written, or undefined when the value is not direct. */
function run(write: () => void): Uint8Array | undefined {
  pos = 0;
  depth = 0;
  try {
    write();
  } catch (err) {
    if (err === NOT_DIRECT) return undefined;
    throw err;
  }
  const out = output(pos);
  buf.copy(out, 0, 0, pos);
  return out;
}

/**
 * The encoder's results are cut from slabs of its own (a view each), as Buffer.allocUnsafe cuts small
 * buffers from its 8 KB pool: a cold build's ~90 MB of encodings would be ~11,000 pools, each a new
 * ArrayBuffer (allocated, tracked and swept by the collector); slabs 8 times larger make 8 times fewer. A
 * slab lives while any encoding cut from it does, as a pool does. Large results get a buffer of their own.
 */
const SLAB = 1 << 16;
const OWN_BUFFER = SLAB >>> 2;
let slab = Buffer.allocUnsafeSlow(SLAB);
let slabAt = 0;

function output(length: number): Buffer {
  if (length > OWN_BUFFER) return Buffer.allocUnsafeSlow(length);
  if (slabAt + length > SLAB) {
    slab = Buffer.allocUnsafeSlow(SLAB);
    slabAt = 0;
  }
  const out = slab.subarray(slabAt, slabAt + length);
  slabAt += length;
  return out;
}

/** `value` encoded as `type`, byte for byte protobufjs's encoding; undefined when the generic path must do it. */
export function encodeDirect(type: protobuf.Type, value: Record<string, unknown>): Uint8Array | undefined {
  const plan = planOf(type);
  return run(() => (plan.any ? anyBody(value) : messageBody(plan, value, false)));
}

/**
 * The elements of a repeated message field, each framed by `tag` and its length, in one buffer: an element
 * `encoded` knows is copied, any other written directly. Undefined when an element is not direct.
 */
export function encodeDirectFramed(type: protobuf.Type, items: readonly object[], tag: number, encoded: (item: object) => Uint8Array | undefined): Uint8Array | undefined {
  const plan = planOf(type);
  return run(() => {
    for (const item of items) {
      varint32(tag);
      const known = encoded(item);
      if (known) {
        varint32(known.length);
        ensure(known.length);
        buf.set(known, pos);
        pos += known.length;
        continue;
      }
      delimitedMessage(plan, item);
    }
  });
}
