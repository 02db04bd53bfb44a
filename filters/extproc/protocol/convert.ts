import type { ModelProtocol } from '../../../src/contract/filter-policy.js';
import { isTensorSignature, type InputSpec, type Signature } from '../../../src/contract/signature.js';
import { shapeOf } from '../signature/values.js';
import { datatypeOf, inferDatatype, type OipDatatype } from './datatypes.js';

/**
 * Bodies converted between MLflow's scoring protocol and the Open Inference Protocol v2, so a model keeps
 * one public API whatever protocol each version's server speaks (docs/signatures.md has the table).
 *
 * Requests: MLflow columns (`dataframe_split`, `dataframe_records`, records or column objects in
 * `instances`/`inputs`) become one OIP tensor per column, shape [rows]; MLflow tensors (nested lists) become
 * one tensor each with their shape; `params` is `parameters`. OIP inputs that are all columns ([rows] or
 * [rows, 1], same rows) become `dataframe_split`; other tensors become `inputs` (one, or by name).
 * Answers: `predictions` records become one output per column; one OIP output becomes `predictions`,
 * several of the same rows become records. Datatypes come from the version's signature when it has one.
 */

type Json = unknown;
const isRecord = (v: Json): v is Record<string, Json> => typeof v === 'object' && v !== null && !Array.isArray(v);

export interface OipTensor {
  readonly name: string;
  readonly shape: number[];
  readonly datatype: string;
  readonly data: unknown[];
}

export type Converted = { readonly ok: true; readonly body: Json } | { readonly ok: false; readonly message: string };

/** The signature entry of a named input or output, or the only one. */
function specOf(specs: readonly InputSpec[] | undefined, name: string | undefined): InputSpec | undefined {
  if (!specs || specs.length === 0) return undefined;
  const named = name === undefined ? undefined : specs.find((s) => s.name === name);
  return named ?? (specs.length === 1 && (name === undefined || specs[0]?.name === undefined) ? specs[0] : undefined);
}

function declaredDatatype(spec: InputSpec | undefined): OipDatatype | undefined {
  if (!spec) return undefined;
  if (spec.kind === 'tensor') return datatypeOf({ dtype: spec.dtype });
  return spec.type.kind === 'scalar' ? datatypeOf({ scalar: spec.type.type }) : undefined;
}

/** One tensor of values of one name: rectangular nested lists keep their shape; anything else is JSON text. */
function tensor(name: string, value: Json, spec: InputSpec | undefined, batch: boolean): OipTensor {
  const rows = batch && Array.isArray(value) ? value : [value];
  const s = shapeOf(batch ? rows : value);
  if (!('ragged' in s) && s.leaves.every((l) => l === null || typeof l !== 'object')) {
    const shape = s.shape.length === 0 ? [1] : s.shape;
    return { name, shape, datatype: declaredDatatype(spec) ?? inferDatatype(s.leaves), data: s.leaves };
  }
  return { name, shape: [rows.length], datatype: 'BYTES', data: rows.map((r) => (typeof r === 'string' ? r : JSON.stringify(r))) };
}

/** Columns (name -> values, in first-seen order) of a list of records. */
function recordsToColumns(records: readonly Record<string, Json>[]): Map<string, Json[]> {
  const cols = new Map<string, Json[]>();
  records.forEach((rec, r) => {
    for (const key of Object.keys(rec)) if (!cols.has(key)) cols.set(key, new Array<Json>(r).fill(null));
    for (const [key, values] of cols) values.push(rec[key] ?? null);
  });
  return cols;
}

function columnTensors(cols: Map<string, Json[]>, sig: Signature | undefined): OipTensor[] {
  return [...cols].map(([name, values]) => tensor(name, values, specOf(sig?.inputs, name), true));
}

/** An MLflow scoring request as an OIP v2 infer request. */
export function mlflowToOipRequest(body: Json, sig: Signature | undefined): Converted {
  if (!isRecord(body)) return { ok: false, message: 'the request body must be a JSON object' };
  let inputs: OipTensor[];
  if (isRecord(body.dataframe_split)) {
    const { columns, data } = body.dataframe_split;
    if (!Array.isArray(columns) || !Array.isArray(data)) return { ok: false, message: 'dataframe_split needs columns and data lists' };
    const cols = new Map<string, Json[]>(columns.map((c: Json, i) => [String(c), data.map((row: Json): Json => (Array.isArray(row) ? ((row as Json[])[i] ?? null) : null))]));
    inputs = columnTensors(cols, sig);
  } else if (Array.isArray(body.dataframe_records)) {
    if (!body.dataframe_records.every(isRecord)) return { ok: false, message: 'dataframe_records must be a list of objects' };
    inputs = columnTensors(recordsToColumns(body.dataframe_records), sig);
  } else {
    const value = body.instances ?? body.inputs;
    if (value === undefined) return { ok: false, message: 'the body has none of dataframe_split, dataframe_records, instances, inputs' };
    if (Array.isArray(value) && value.length > 0 && value.every(isRecord)) {
      inputs = columnTensors(recordsToColumns(value), sig);
    } else if (isRecord(value)) {
      inputs = Object.entries(value).map(([name, v]) => tensor(name, v, specOf(sig?.inputs, name), Array.isArray(v)));
    } else {
      const spec = specOf(sig?.inputs, undefined);
      inputs = [tensor(spec?.name ?? 'input-0', value, spec, false)];
    }
  }
  return { ok: true, body: { inputs, ...(isRecord(body.params) && { parameters: body.params }) } };
}

/** Nested lists of `shape` from row-major `leaves`. */
export function reshape(leaves: readonly Json[], shape: readonly number[]): Json {
  if (shape.length === 0) return leaves[0];
  let offset = 0;
  const build = (dim: number): Json[] => {
    const size = shape[dim] ?? 0;
    const out: Json[] = [];
    for (let i = 0; i < size; i++) out.push(dim === shape.length - 1 ? leaves[offset++] : build(dim + 1));
    return out;
  };
  return build(0);
}

function readTensors(list: Json, what: string): OipTensor[] | string {
  if (!Array.isArray(list)) return `${what} must be a list of tensors`;
  const out: OipTensor[] = [];
  for (const t of list) {
    if (!isRecord(t) || typeof t.name !== 'string' || !Array.isArray(t.shape) || t.data === undefined) return `each of ${what} needs name, shape and data`;
    const s = shapeOf(t.data);
    const leaves = 'ragged' in s ? [] : s.leaves;
    out.push({ name: t.name, shape: t.shape.map(Number), datatype: typeof t.datatype === 'string' ? t.datatype : '', data: leaves });
  }
  return out;
}

const isColumn = (t: OipTensor): boolean => t.shape.length === 1 || (t.shape.length === 2 && t.shape[1] === 1);

/** An OIP v2 infer request as an MLflow scoring request. */
export function oipToMlflowRequest(body: Json, sig: Signature | undefined): Converted {
  if (!isRecord(body)) return { ok: false, message: 'the request body must be a JSON object' };
  const tensors = readTensors(body.inputs, 'inputs');
  if (typeof tensors === 'string') return { ok: false, message: tensors };
  const params = isRecord(body.parameters) ? { params: body.parameters } : {};
  const rows = tensors[0]?.shape[0];
  const columns = !(sig && isTensorSignature(sig.inputs)) && tensors.length > 0 && tensors.every((t) => isColumn(t) && t.shape[0] === rows);
  if (columns) {
    const n = rows ?? 0;
    const data = Array.from({ length: n }, (_, r) => tensors.map((t) => t.data[r] ?? null));
    return { ok: true, body: { dataframe_split: { columns: tensors.map((t) => t.name), data }, ...params } };
  }
  const [only] = tensors;
  if (tensors.length === 1 && only && (!sig || sig.inputs.length <= 1)) return { ok: true, body: { inputs: reshape(only.data, only.shape), ...params } };
  return { ok: true, body: { inputs: Object.fromEntries(tensors.map((t) => [t.name, reshape(t.data, t.shape)])), ...params } };
}

/** An MLflow scoring answer (any status) as an OIP v2 answer. */
export function mlflowToOipResponse(body: Json, status: number, ctx: { model: string; version: string; id?: string | undefined; signature?: Signature | undefined }): Json {
  if (status >= 400) {
    const message = isRecord(body) && typeof body.message === 'string' ? body.message : `the model answered ${status}`;
    return { error: message };
  }
  const predictions = isRecord(body) && 'predictions' in body ? body.predictions : body;
  const outputsSpec = ctx.signature?.outputs;
  let outputs: OipTensor[];
  if (Array.isArray(predictions) && predictions.length > 0 && predictions.every(isRecord)) {
    outputs = [...recordsToColumns(predictions)].map(([name, values]) => tensor(name, values, specOf(outputsSpec, name), true));
  } else if (isRecord(predictions)) {
    outputs = Object.entries(predictions).map(([name, v]) => tensor(name, v, specOf(outputsSpec, name), Array.isArray(v)));
  } else {
    const spec = specOf(outputsSpec, undefined);
    outputs = [tensor(spec?.name ?? 'predictions', predictions, spec, false)];
  }
  return { model_name: ctx.model, model_version: ctx.version, ...(ctx.id !== undefined && { id: ctx.id }), outputs };
}

const ERROR_CODES: Readonly<Record<number, string>> = { 400: 'BAD_REQUEST', 404: 'RESOURCE_DOES_NOT_EXIST', 422: 'INVALID_PARAMETER_VALUE' };

/** An OIP v2 answer (any status) as an MLflow scoring answer. */
export function oipToMlflowResponse(body: Json, status: number): Json {
  if (status >= 400) {
    const message = isRecord(body) && typeof body.error === 'string' ? body.error : `the model answered ${status}`;
    return { error_code: ERROR_CODES[status] ?? (status >= 500 ? 'INTERNAL_ERROR' : 'BAD_REQUEST'), message };
  }
  const outputs = isRecord(body) ? readTensors(body.outputs, 'outputs') : 'the answer is not an object';
  if (typeof outputs === 'string') return { error_code: 'INTERNAL_ERROR', message: `the model's OIP answer is unreadable: ${outputs}` };
  const [only] = outputs;
  if (outputs.length === 1 && only) return { predictions: reshape(only.data, only.shape) };
  const rows = only?.shape[0];
  if (outputs.length > 1 && outputs.every((t) => isColumn(t) && t.shape[0] === rows)) {
    return { predictions: Array.from({ length: rows ?? 0 }, (_, r) => Object.fromEntries(outputs.map((t) => [t.name, t.data[r] ?? null]))) };
  }
  return { predictions: Object.fromEntries(outputs.map((t) => [t.name, reshape(t.data, t.shape)])) };
}

/** Whether a (rewritten) request path is the inference call of its protocol: /invocations, or /v2/models/{name}[/versions/{v}]/infer. */
export function isInferencePath(path: string, protocol: ModelProtocol, registeredModel: string): boolean {
  const bare = path.split('?')[0] ?? '';
  if (protocol === 'mlflow') return bare === '/invocations';
  const base = `/v2/models/${encodeURIComponent(registeredModel)}`;
  return bare === `${base}/infer` || (bare.startsWith(`${base}/versions/`) && bare.endsWith('/infer'));
}

/** Where a request goes on a version that speaks another protocol, and whether its body is an inference. */
export type VersionRoute = { readonly path: string; readonly infer: boolean } | { readonly metadata: true };

/** The version's path for a public path (after the route's rewrite), keeping the query. */
export function versionRoute(path: string, from: ModelProtocol, to: ModelProtocol, registeredModel: string): VersionRoute {
  if (from === to) return { path, infer: false };
  const q = path.indexOf('?');
  const bare = q < 0 ? path : path.slice(0, q);
  const query = q < 0 ? '' : path.slice(q);
  const base = `/v2/models/${encodeURIComponent(registeredModel)}`;
  if (from === 'mlflow') {
    if (bare === '/invocations') return { path: `${base}/infer${query}`, infer: true };
    if (bare === '/ping' || bare === '/health') return { path: `${base}/ready${query}`, infer: false };
    return { path, infer: false };
  }
  if (isInferencePath(bare, 'oip', registeredModel)) return { path: `/invocations${query}`, infer: true };
  if (bare === `${base}/ready`) return { path: `/ping${query}`, infer: false };
  if (bare === base || bare === `${base}/`) return { metadata: true };
  return { path, infer: false };
}

/** The OIP model-metadata answer of a version that speaks MLflow, from its signature. */
export function oipMetadata(model: string, version: string, sig: Signature | undefined): Json {
  const describe = (specs: readonly InputSpec[]): object[] =>
    specs.map((s, i) => ({
      name: s.name ?? `${i === 0 ? 'input' : 'tensor'}-${i}`,
      datatype: declaredDatatype(s) ?? 'BYTES',
      shape: s.kind === 'tensor' ? s.shape : [-1],
    }));
  return { name: model, versions: [version], platform: 'mlflow', inputs: describe(sig?.inputs ?? []), outputs: describe(sig?.outputs ?? []) };
}
