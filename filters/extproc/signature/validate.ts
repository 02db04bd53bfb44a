import type { ModelProtocol } from '../../../src/contract/filter-policy.js';
import { isTensorSignature, type ColumnSpec, type ParamSpec, type Signature, type TensorSpec } from '../../../src/contract/signature.js';
import { OIP_DATATYPES, oipDatatypeFits } from '../protocol/datatypes.js';
import { checkValue, describe, dtypeOk, shapeFits, shapeOf, shapeText, typeName } from './values.js';

/**
 * A request body checked against a model version's MLflow signature, before the version is called. The
 * body is read in the model's public protocol: MLflow's scoring formats (`dataframe_split`,
 * `dataframe_records`, `instances`, `inputs`, with `params`) or OIP v2 (`inputs[]` of name, shape,
 * datatype, data, with `parameters`). Every problem is listed (up to MAX_PROBLEMS) with a JSON pointer to
 * where it is, so a caller can fix all of them at once. Extra columns and unknown params pass, as MLflow
 * ignores them.
 */

export type ProblemKind =
  | 'unknown_format'
  | 'malformed'
  | 'missing_column'
  | 'wrong_type'
  | 'null_value'
  | 'wrong_shape'
  | 'missing_input'
  | 'wrong_datatype'
  | 'wrong_param_type';

export interface InputProblem {
  /** JSON pointer into the request body. */
  readonly path: string;
  readonly problem: ProblemKind;
  readonly message: string;
  readonly column?: string;
  readonly expected?: string;
  readonly got?: string;
}

export const MAX_PROBLEMS = 50;

const MLFLOW_FORMATS = ['dataframe_split', 'dataframe_records', 'instances', 'inputs'] as const;

type Json = unknown;
const isRecord = (v: Json): v is Record<string, Json> => typeof v === 'object' && v !== null && !Array.isArray(v);
const esc = (key: string): string => key.replaceAll('~', '~0').replaceAll('/', '~1');

class Problems {
  readonly list: InputProblem[] = [];
  truncated = false;
  add(p: InputProblem): void {
    if (this.list.length < MAX_PROBLEMS) this.list.push(p);
    else this.truncated = true;
  }
}

/** The problems of `body` against `signature` read in `protocol`; empty when the signature accepts it. */
export function validateRequest(body: Json, signature: Signature, protocol: ModelProtocol): { problems: InputProblem[]; truncated: boolean } {
  const out = new Problems();
  if (!isRecord(body)) {
    out.add({ path: '', problem: 'malformed', message: `the request body must be a JSON object (got ${describe(body)})` });
  } else if (protocol === 'oip') {
    checkOip(body, signature, out);
    checkParams(body.parameters, '/parameters', signature.params, out);
  } else {
    checkMlflow(body, signature, out);
    checkParams(body.params, '/params', signature.params, out);
  }
  return { problems: out.list, truncated: out.truncated };
}

function checkMlflow(body: Record<string, Json>, sig: Signature, out: Problems): void {
  const formats = MLFLOW_FORMATS.filter((f) => f in body);
  if (formats.length !== 1) {
    const found = formats.length === 0 ? `none (keys: ${Object.keys(body).join(', ') || 'none'})` : formats.join(' and ');
    out.add({ path: '', problem: 'unknown_format', message: `the body must have exactly one of ${MLFLOW_FORMATS.join(', ')}; found ${found}` });
    return;
  }
  const format = formats[0] as (typeof MLFLOW_FORMATS)[number];
  const value = body[format];
  const path = `/${format}`;
  if (isTensorSignature(sig.inputs)) {
    checkMlflowTensors(format, value, path, sig.inputs as TensorSpec[], out);
    return;
  }
  const columns = sig.inputs.filter((s): s is ColumnSpec => s.kind === 'column');
  if (format === 'dataframe_split') checkSplit(value, path, columns, out);
  else if (format === 'dataframe_records' || Array.isArray(value)) checkRecords(value, path, columns, out);
  else if (isRecord(value)) checkColumnar(value, path, columns, out);
  else out.add({ path, problem: 'malformed', message: `${format} must be a list of records or an object of columns (got ${describe(value)})` });
}

/** One cell of a column: null only where the column is optional, else a value of its type. */
function checkCell(col: ColumnSpec, value: Json, path: string, out: Problems): void {
  const name = col.name ?? '(unnamed)';
  if (value === null || value === undefined) {
    if (col.required) out.add({ path, problem: 'null_value', column: name, expected: typeName(col.type), got: 'null', message: `column '${name}' is required and is null` });
    return;
  }
  const m = checkValue(col.type, value);
  if (m) out.add({ path: path + m.at, problem: 'wrong_type', column: name, expected: m.expected, got: m.got, message: `column '${name}' must be ${m.expected}, got ${m.got}` });
}

function missingColumn(col: ColumnSpec, path: string, where: string, out: Problems): void {
  const name = col.name ?? '(unnamed)';
  out.add({ path, problem: 'missing_column', column: name, expected: typeName(col.type), message: `required column '${name}' (${typeName(col.type)}) is missing${where}` });
}

function checkSplit(value: Json, path: string, columns: readonly ColumnSpec[], out: Problems): void {
  if (!isRecord(value)) return out.add({ path, problem: 'malformed', message: `dataframe_split must be an object with columns and data (got ${describe(value)})` });
  const names = value.columns;
  if (!Array.isArray(names) || !names.every((n) => typeof n === 'string')) {
    return out.add({ path: `${path}/columns`, problem: 'malformed', message: 'dataframe_split.columns must be a list of column names' });
  }
  const data = value.data;
  if (!Array.isArray(data)) return out.add({ path: `${path}/data`, problem: 'malformed', message: `dataframe_split.data must be a list of rows (got ${describe(data)})` });
  const index = new Map(names.map((n, i) => [n, i]));
  for (const col of columns) if (col.required && col.name !== undefined && !index.has(col.name)) missingColumn(col, `${path}/columns`, '', out);
  data.forEach((row: Json, r) => {
    const at = `${path}/data/${r}`;
    if (!Array.isArray(row) || row.length !== names.length) {
      const got = Array.isArray(row) ? `${row.length} values` : describe(row);
      out.add({ path: at, problem: 'wrong_shape', expected: `${names.length} values`, got, message: `row ${r} must have ${names.length} values, one per column (got ${got})` });
      return;
    }
    for (const col of columns) {
      const i = col.name === undefined ? undefined : index.get(col.name);
      if (i !== undefined) checkCell(col, row[i], `${at}/${i}`, out);
    }
  });
}

function checkRecords(value: Json, path: string, columns: readonly ColumnSpec[], out: Problems): void {
  if (!Array.isArray(value)) return out.add({ path, problem: 'malformed', message: `expected a list of records (got ${describe(value)})` });
  const single = columns.length === 1 ? columns[0] : undefined;
  value.forEach((rec: Json, r) => {
    const at = `${path}/${r}`;
    if (!isRecord(rec)) {
      // A list of plain values is a single column's values (MLflow reads `instances: [1, 2]` that way).
      if (single && single.name !== undefined) return checkCell(single, rec, at, out);
      return out.add({ path: at, problem: 'malformed', message: `record ${r} must be an object of column values (got ${describe(rec)})` });
    }
    for (const col of columns) {
      if (col.name === undefined) continue;
      if (!(col.name in rec)) {
        if (col.required) missingColumn(col, at, ` from record ${r}`, out);
        continue;
      }
      checkCell(col, rec[col.name], `${at}/${esc(col.name)}`, out);
    }
  });
}

function checkColumnar(value: Record<string, Json>, path: string, columns: readonly ColumnSpec[], out: Problems): void {
  for (const col of columns) {
    if (col.name === undefined) continue;
    if (!(col.name in value)) {
      if (col.required) missingColumn(col, path, '', out);
      continue;
    }
    const cells = value[col.name];
    const at = `${path}/${esc(col.name)}`;
    // A column's values, or one value for a one-row input.
    if (Array.isArray(cells) && !(col.type.kind === 'array' && !cells.some(Array.isArray))) cells.forEach((c: Json, i) => checkCell(col, c, `${at}/${i}`, out));
    else checkCell(col, cells, at, out);
  }
}

function checkTensorValue(spec: TensorSpec, value: Json, path: string, shapeSpec: readonly number[], out: Problems): void {
  const name = spec.name ?? 'the input tensor';
  const s = shapeOf(value);
  if ('ragged' in s) return out.add({ path: path + s.ragged, problem: 'wrong_shape', column: spec.name, message: `${name} is not a rectangular array (rows of different lengths)` });
  if (!shapeFits(shapeSpec, s.shape)) {
    return out.add({ path, problem: 'wrong_shape', column: spec.name, expected: shapeText(shapeSpec), got: shapeText(s.shape), message: `${name} must have shape ${shapeText(shapeSpec)}, got ${shapeText(s.shape)}` });
  }
  const bad = s.leaves.findIndex((leaf) => !dtypeOk(spec.dtype, leaf));
  if (bad >= 0) {
    const got = describe(s.leaves[bad]);
    out.add({ path, problem: 'wrong_type', column: spec.name, expected: spec.dtype, got, message: `${name} holds ${spec.dtype} values, got ${got} (element ${bad} in row-major order)` });
  }
}

function checkMlflowTensors(format: string, value: Json, path: string, specs: readonly TensorSpec[], out: Problems): void {
  const [only] = specs;
  if (specs.length === 1 && only && (only.name === undefined || !isRecord(value))) {
    if (format === 'dataframe_split' && isRecord(value)) return checkTensorValue(only, value.data, `${path}/data`, only.shape, out);
    if (format === 'dataframe_records') return; // rows of a frame: MLflow stacks them; only the tensor forms are checked
    return checkTensorValue(only, value, path, only.shape, out);
  }
  if (format === 'instances' && Array.isArray(value)) {
    // Named tensors as instances: one object per row, each value a row of its tensor.
    value.forEach((row: Json, r) => {
      if (!isRecord(row)) return out.add({ path: `${path}/${r}`, problem: 'malformed', message: `instance ${r} must be an object of named tensors` });
      for (const spec of specs) {
        if (spec.name === undefined) continue;
        if (!(spec.name in row)) out.add({ path: `${path}/${r}`, problem: 'missing_input', column: spec.name, message: `tensor '${spec.name}' is missing from instance ${r}` });
        else checkTensorValue(spec, row[spec.name], `${path}/${r}/${esc(spec.name)}`, spec.shape.slice(1), out);
      }
    });
    return;
  }
  if (!isRecord(value)) return out.add({ path, problem: 'malformed', message: `${format} must be an object of named tensors (got ${describe(value)})` });
  for (const spec of specs) {
    if (spec.name === undefined) continue;
    if (!(spec.name in value)) out.add({ path, problem: 'missing_input', column: spec.name, message: `tensor '${spec.name}' is missing` });
    else checkTensorValue(spec, value[spec.name], `${path}/${esc(spec.name)}`, spec.shape, out);
  }
}

/** OIP v2: `inputs` is a list of {name, shape, datatype, data}; columns are 1-D tensors named after them. */
function checkOip(body: Record<string, Json>, sig: Signature, out: Problems): void {
  const inputs = body.inputs;
  if (!Array.isArray(inputs)) return out.add({ path: '/inputs', problem: 'unknown_format', message: `an OIP v2 request needs inputs: a list of {name, shape, datatype, data} (got ${describe(inputs)})` });
  const byName = new Map<string, { t: Record<string, Json>; at: string }>();
  inputs.forEach((t: Json, i) => {
    const at = `/inputs/${i}`;
    if (!isRecord(t) || typeof t.name !== 'string' || !Array.isArray(t.shape) || typeof t.datatype !== 'string' || t.data === undefined) {
      return out.add({ path: at, problem: 'malformed', message: `input ${i} must have name, shape, datatype and data` });
    }
    if (!(OIP_DATATYPES as readonly string[]).includes(t.datatype)) return out.add({ path: `${at}/datatype`, problem: 'malformed', message: `input '${t.name}' has an unknown datatype ${JSON.stringify(t.datatype)}` });
    byName.set(t.name, { t, at });
  });
  const tensors = isTensorSignature(sig.inputs);
  const only: Json = inputs[0];
  for (const spec of sig.inputs) {
    const found = spec.name !== undefined ? byName.get(spec.name) : sig.inputs.length === 1 && isRecord(only) ? byName.get(String(only.name)) : undefined;
    const label = spec.name ?? 'the input tensor';
    if (!found) {
      const required = spec.kind === 'tensor' || spec.required;
      if (required) out.add({ path: '/inputs', problem: tensors ? 'missing_input' : 'missing_column', column: spec.name, message: `input '${label}' is missing` });
      continue;
    }
    const { t, at } = found;
    const shape = (t.shape as Json[]).map((d) => (typeof d === 'number' ? d : NaN));
    const flat = shapeOf(t.data);
    const leaves = 'ragged' in flat ? undefined : flat.leaves;
    const count = shape.reduce((a, b) => a * b, 1);
    if (shape.some((d) => !Number.isInteger(d) || d < 0) || leaves === undefined || leaves.length !== count) {
      out.add({ path: `${at}/data`, problem: 'wrong_shape', column: spec.name, expected: `${Number.isNaN(count) ? '?' : count} values for shape ${shapeText(shape)}`, got: leaves ? `${leaves.length} values` : 'a ragged array', message: `input '${label}': data does not hold shape ${shapeText(shape)}` });
      continue;
    }
    if (spec.kind === 'tensor') {
      if (!shapeFits(spec.shape, shape)) out.add({ path: `${at}/shape`, problem: 'wrong_shape', column: spec.name, expected: shapeText(spec.shape), got: shapeText(shape), message: `input '${label}' must have shape ${shapeText(spec.shape)}, got ${shapeText(shape)}` });
      if (!oipDatatypeFits(String(t.datatype), { dtype: spec.dtype })) out.add({ path: `${at}/datatype`, problem: 'wrong_datatype', column: spec.name, expected: spec.dtype, got: String(t.datatype), message: `input '${label}' holds ${spec.dtype}; datatype ${String(t.datatype)} cannot carry it` });
      const bad = leaves.findIndex((l) => !dtypeOk(spec.dtype, l));
      if (bad >= 0) out.add({ path: `${at}/data`, problem: 'wrong_type', column: spec.name, expected: spec.dtype, got: describe(leaves[bad]), message: `input '${label}' holds ${spec.dtype} values, got ${describe(leaves[bad])}` });
      continue;
    }
    // A column: one value per row (shape [n] or [n, 1]); array columns carry a row per value.
    const scalarColumn = spec.type.kind === 'scalar';
    if (scalarColumn && !(shape.length === 1 || (shape.length === 2 && shape[1] === 1))) {
      out.add({ path: `${at}/shape`, problem: 'wrong_shape', column: spec.name, expected: '[rows] or [rows, 1]', got: shapeText(shape), message: `column '${label}' is one value per row: shape [rows] or [rows, 1], got ${shapeText(shape)}` });
      continue;
    }
    if (scalarColumn && spec.type.kind === 'scalar' && !oipDatatypeFits(String(t.datatype), { scalar: spec.type.type })) {
      out.add({ path: `${at}/datatype`, problem: 'wrong_datatype', column: spec.name, expected: spec.type.type, got: String(t.datatype), message: `column '${label}' is ${spec.type.type}; datatype ${String(t.datatype)} cannot carry it` });
      continue;
    }
    if (scalarColumn) leaves.forEach((v, i) => checkCell(spec, v, `${at}/data/${i}`, out));
  }
}

function checkParams(params: Json, path: string, specs: readonly ParamSpec[], out: Problems): void {
  if (params === undefined || specs.length === 0) return;
  if (!isRecord(params)) return out.add({ path, problem: 'malformed', message: `params must be an object (got ${describe(params)})` });
  for (const spec of specs) {
    const v = params[spec.name];
    if (v === undefined || v === null) continue;
    const list = spec.shape !== undefined && spec.shape.length > 0;
    const type = list ? { kind: 'array' as const, items: { kind: 'scalar' as const, type: spec.type } } : { kind: 'scalar' as const, type: spec.type };
    const m = checkValue(type, v);
    if (m) out.add({ path: `${path}/${esc(spec.name)}${m.at}`, problem: 'wrong_param_type', column: spec.name, expected: m.expected, got: m.got, message: `param '${spec.name}' must be ${typeName(type)}, got ${m.got}` });
  }
}
