import type { ScalarType, TensorDtype, ValueType } from '../../../src/contract/signature.js';

/**
 * Whether one JSON value can be what a signature says, judged as MLflow's scoring server would parse it:
 * integers are fine where a double is expected, a string never is a number, a datetime is a string a date
 * parser reads. Each check answers with what was expected and what came, for the 400 a caller reads.
 */

/** What a value was, in the caller's terms (`string "abc"`, `number 3.5`, `object`). */
export function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return `array of ${value.length}`;
  if (typeof value === 'string') return `string ${JSON.stringify(value.length > 40 ? `${value.slice(0, 37)}...` : value)}`;
  if (typeof value === 'number' || typeof value === 'boolean') return `${typeof value} ${String(value)}`;
  return typeof value;
}

const INT32 = 2 ** 31;

/** A mismatch at a path below the value checked ('' for the value itself). */
export interface Mismatch {
  readonly at: string;
  readonly expected: string;
  readonly got: string;
}

function scalarOk(type: ScalarType, v: unknown): boolean {
  switch (type) {
    case 'boolean':
      return typeof v === 'boolean';
    case 'integer':
      return typeof v === 'number' && Number.isInteger(v) && v >= -INT32 && v < INT32;
    case 'long':
      return typeof v === 'number' && Number.isInteger(v);
    case 'float':
    case 'double':
      return typeof v === 'number' && Number.isFinite(v);
    case 'string':
    case 'binary':
      return typeof v === 'string';
    case 'datetime':
      return typeof v === 'string' && !Number.isNaN(Date.parse(v));
  }
}

/** How a type is named to a caller. */
export function typeName(t: ValueType): string {
  switch (t.kind) {
    case 'scalar':
      return t.type;
    case 'array':
      return `array of ${typeName(t.items)}`;
    case 'object':
      return `object {${t.properties.map((p) => `${p.name}${p.required ? '' : '?'}: ${typeName(p.type)}`).join(', ')}}`;
    case 'map':
      return `map of ${typeName(t.values)}`;
    case 'any':
      return 'any';
  }
}

const escape = (key: string): string => key.replaceAll('~', '~0').replaceAll('/', '~1');

/** The first mismatch between `value` and `type` (null is judged by the caller: it depends on `required`). */
export function checkValue(type: ValueType, value: unknown): Mismatch | undefined {
  switch (type.kind) {
    case 'any':
      return undefined;
    case 'scalar':
      return scalarOk(type.type, value) ? undefined : { at: '', expected: type.type, got: describe(value) };
    case 'array': {
      if (!Array.isArray(value)) return { at: '', expected: typeName(type), got: describe(value) };
      for (let i = 0; i < value.length; i++) {
        const item: unknown = value[i];
        const inner = item === null ? { at: '', expected: typeName(type.items), got: 'null' } : checkValue(type.items, item);
        if (inner) return { ...inner, at: `/${i}${inner.at}` };
      }
      return undefined;
    }
    case 'map': {
      if (typeof value !== 'object' || value === null || Array.isArray(value)) return { at: '', expected: typeName(type), got: describe(value) };
      for (const [k, v] of Object.entries(value)) {
        const inner = checkValue(type.values, v);
        if (inner) return { ...inner, at: `/${escape(k)}${inner.at}` };
      }
      return undefined;
    }
    case 'object': {
      if (typeof value !== 'object' || value === null || Array.isArray(value)) return { at: '', expected: typeName(type), got: describe(value) };
      const record = value as Record<string, unknown>;
      for (const p of type.properties) {
        const v = record[p.name];
        if (v === undefined || v === null) {
          if (p.required) return { at: `/${escape(p.name)}`, expected: typeName(p.type), got: v === null ? 'null' : 'nothing (the property is missing)' };
          continue;
        }
        const inner = checkValue(p.type, v);
        if (inner) return { ...inner, at: `/${escape(p.name)}${inner.at}` };
      }
      return undefined;
    }
  }
}

const DTYPE_RANGE: Readonly<Partial<Record<TensorDtype, readonly [number, number]>>> = {
  int8: [-(2 ** 7), 2 ** 7 - 1],
  int16: [-(2 ** 15), 2 ** 15 - 1],
  int32: [-INT32, INT32 - 1],
  int64: [Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER],
  uint8: [0, 2 ** 8 - 1],
  uint16: [0, 2 ** 16 - 1],
  uint32: [0, 2 ** 32 - 1],
  uint64: [0, Number.MAX_SAFE_INTEGER],
};

/** Whether a tensor element (a JSON leaf) fits the dtype. */
export function dtypeOk(dtype: TensorDtype, v: unknown): boolean {
  if (dtype === 'object') return true;
  if (dtype === 'bool') return typeof v === 'boolean';
  if (dtype === 'str' || dtype === 'bytes') return typeof v === 'string';
  if (typeof v !== 'number' || !Number.isFinite(v)) return false;
  const range = DTYPE_RANGE[dtype];
  if (!range) return true; // float16/32/64: any finite number
  return Number.isInteger(v) && v >= range[0] && v <= range[1];
}

/** The shape of a nested JSON array (rectangular), or the path of the first ragged place. */
export function shapeOf(value: unknown): { shape: number[]; leaves: unknown[] } | { ragged: string } {
  if (!Array.isArray(value)) return { shape: [], leaves: [value] };
  if (value.length === 0) return { shape: [0], leaves: [] };
  const first = shapeOf(value[0]);
  if ('ragged' in first) return { ragged: `/0${first.ragged}` };
  const leaves = first.leaves;
  for (let i = 1; i < value.length; i++) {
    const s = shapeOf(value[i]);
    if ('ragged' in s) return { ragged: `/${i}${s.ragged}` };
    if (s.shape.length !== first.shape.length || s.shape.some((d, j) => d !== first.shape[j])) return { ragged: `/${i}` };
    // One by one: spreading a long list into push() can overflow the call stack.
    for (const leaf of s.leaves) leaves.push(leaf);
  }
  return { shape: [value.length, ...first.shape], leaves };
}

/** Whether a concrete shape fits a spec shape (-1: any size). */
export function shapeFits(spec: readonly number[], shape: readonly number[]): boolean {
  return spec.length === shape.length && spec.every((d, i) => d === -1 || d === shape[i]);
}

/** A shape as people write it: (-1, 4) becomes [any, 4]. */
export function shapeText(shape: readonly number[]): string {
  return `[${shape.map((d) => (d === -1 ? 'any' : String(d))).join(', ')}]`;
}
