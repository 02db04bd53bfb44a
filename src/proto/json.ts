import protobuf from 'protobufjs';
import { messageType } from './root.js';

/**
 * Renders encoded messages the way Envoy's YAML and config_dump write them: snake_case field names, default
 * values omitted, Any expanded with `@type`, durations as "1.5s", wrappers as their value, Structs as JSON.
 * Used by `flowgate render`, the config dump and the golden files, so a reviewer reads what Envoy reads.
 */
export function toEnvoyJson(typeNameOrUrl: string, bytes: Uint8Array): Record<string, unknown> {
  const type = messageType(typeNameOrUrl);
  return messageJson(type, type.decode(bytes)) as Record<string, unknown>;
}

const WRAPPERS = new Set([
  '.google.protobuf.DoubleValue',
  '.google.protobuf.FloatValue',
  '.google.protobuf.Int64Value',
  '.google.protobuf.UInt64Value',
  '.google.protobuf.Int32Value',
  '.google.protobuf.UInt32Value',
  '.google.protobuf.BoolValue',
  '.google.protobuf.StringValue',
  '.google.protobuf.BytesValue',
]);

function messageJson(type: protobuf.Type, msg: protobuf.Message): unknown {
  const m = msg as unknown as Record<string, unknown>;
  switch (type.fullName) {
    case '.google.protobuf.Any': {
      const typeUrl = typeof m.type_url === 'string' ? m.type_url : '';
      const inner = messageType(typeUrl);
      const value = (m.value as Uint8Array | undefined) ?? new Uint8Array();
      return { '@type': typeUrl, ...(messageJson(inner, inner.decode(value)) as object) };
    }
    case '.google.protobuf.Duration': {
      const seconds = Number(m.seconds ?? 0);
      const nanos = Number(m.nanos ?? 0);
      return `${+(seconds + nanos / 1e9).toFixed(9)}s`;
    }
    case '.google.protobuf.Struct':
      return structJson(m);
    case '.google.protobuf.Value':
      return valueJson(m);
    default:
      break;
  }
  if (WRAPPERS.has(type.fullName)) {
    const field = type.fields.value;
    return field ? scalarJson(field, m.value ?? field.typeDefault) : null;
  }
  const out: Record<string, unknown> = {};
  for (const field of type.fieldsArray) {
    const value = m[field.name];
    if (value === undefined || value === null) continue;
    field.resolve();
    if (field.map) {
      const entries = Object.entries(value as Record<string, unknown>);
      if (entries.length === 0) continue;
      const mapped: Record<string, unknown> = {};
      for (const [k, v] of entries) mapped[k] = fieldValueJson(field, v);
      out[field.name] = mapped;
    } else if (field.repeated) {
      const items = value as unknown[];
      if (items.length === 0) continue;
      out[field.name] = items.map((v) => fieldValueJson(field, v));
    } else if (field.partOf) {
      // A oneof member is present only when it is the member set; then even a default value is explicit.
      if (m[field.partOf.name] !== field.name) continue;
      out[field.name] = fieldValueJson(field, value);
    } else {
      // proto3 scalars at their default are absent, as in Envoy's own dumps.
      if (!(field.resolvedType instanceof protobuf.Type) && isDefault(field, value)) continue;
      out[field.name] = fieldValueJson(field, value);
    }
  }
  return out;
}

function fieldValueJson(field: protobuf.Field, value: unknown): unknown {
  if (field.resolvedType instanceof protobuf.Type) return messageJson(field.resolvedType, value as protobuf.Message);
  return scalarJson(field, value);
}

function scalarJson(field: protobuf.Field, value: unknown): unknown {
  if (field.resolvedType instanceof protobuf.Enum) {
    return field.resolvedType.valuesById[value as number] ?? value;
  }
  switch (field.type) {
    case 'int64':
    case 'uint64':
    case 'sint64':
    case 'fixed64':
    case 'sfixed64':
      return String(value);
    case 'bytes':
      return Buffer.from(value as Uint8Array).toString('base64');
    default:
      return value;
  }
}

function isDefault(field: protobuf.Field, value: unknown): boolean {
  if (field.resolvedType instanceof protobuf.Enum) return value === 0;
  switch (field.type) {
    case 'string':
      return value === '';
    case 'bool':
      return value === false;
    case 'bytes':
      return (value as Uint8Array).length === 0;
    default:
      return Number(value) === 0;
  }
}

function structJson(m: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries((m.fields as Record<string, Record<string, unknown>> | undefined) ?? {})) {
    out[k] = valueJson(v);
  }
  return out;
}

function valueJson(v: Record<string, unknown> & { kind?: string }): unknown {
  // protobufjs' built-in Value keeps camelCase names; `kind` says which member is set.
  switch (v.kind) {
    case 'structValue':
      return structJson(v.structValue as Record<string, unknown>);
    case 'listValue':
      return ((v.listValue as { values?: Record<string, unknown>[] }).values ?? []).map(valueJson);
    case 'stringValue':
    case 'numberValue':
    case 'boolValue':
      return v[v.kind];
    default:
      return null;
  }
}
