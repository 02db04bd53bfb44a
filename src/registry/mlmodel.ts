import { parse as parseYaml } from 'yaml';
import { SCALAR_TYPES, TENSOR_DTYPES, type InputSpec, type ObjectProperty, type ParamSpec, type ScalarType, type Signature, type TensorDtype, type ValueType } from '../contract/signature.js';
import { FlowgateError } from '../errors.js';

/**
 * Reading the signature out of a model version's MLmodel file. MLflow writes it as YAML whose `signature`
 * block holds three JSON strings (inputs, outputs, params) in its own spelling; this turns them into the
 * contract's Signature, so the filter service never parses MLflow's format.
 */

/** An MLmodel whose signature Flowgate cannot read; the version is then treated as having none (and flagged). */
export class SignatureFormatError extends FlowgateError {
  constructor(message: string, where?: string) {
    super('registry.bad_signature', message, where);
    this.name = 'SignatureFormatError';
  }
}

type Json = unknown;

function isRecord(v: Json): v is Record<string, Json> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function scalarType(t: Json, at: string): ScalarType {
  if (typeof t === 'string' && (SCALAR_TYPES as readonly string[]).includes(t)) return t as ScalarType;
  throw new SignatureFormatError(`${at}: unknown MLflow type ${JSON.stringify(t)}`);
}

/** MLflow's type JSON (a DataType name, or an Array / Object / Map / AnyType object) as a ValueType. */
function valueType(spec: Record<string, Json>, at: string): ValueType {
  const t = spec.type;
  if (t === 'array') {
    if (!isRecord(spec.items)) throw new SignatureFormatError(`${at}: an array type has no items`);
    return { kind: 'array', items: valueType(spec.items, `${at}.items`) };
  }
  if (t === 'object') {
    if (!isRecord(spec.properties)) throw new SignatureFormatError(`${at}: an object type has no properties`);
    const properties: ObjectProperty[] = Object.entries(spec.properties).map(([name, p]) => {
      if (!isRecord(p)) throw new SignatureFormatError(`${at}.properties.${name}: not a type`);
      return { name, type: valueType(p, `${at}.properties.${name}`), required: p.required !== false };
    });
    return { kind: 'object', properties: properties.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0)) };
  }
  if (t === 'map') {
    if (!isRecord(spec.values)) throw new SignatureFormatError(`${at}: a map type has no values`);
    return { kind: 'map', values: valueType(spec.values, `${at}.values`) };
  }
  if (t === 'any') return { kind: 'any' };
  return { kind: 'scalar', type: scalarType(t, at) };
}

/** numpy's dtype spelling (`float64`, `<U0`, `|S0`, `object`) as one of the contract's dtypes. */
export function tensorDtype(dtype: Json, at: string): TensorDtype {
  if (typeof dtype !== 'string') throw new SignatureFormatError(`${at}: a tensor spec has no dtype`);
  const d = dtype.replace(/^[<>|=]/, '');
  if ((TENSOR_DTYPES as readonly string[]).includes(d)) return d as TensorDtype;
  if (/^U\d*$/.test(d)) return 'str';
  if (/^S\d*$/.test(d)) return 'bytes';
  if (d === 'bool_') return 'bool';
  throw new SignatureFormatError(`${at}: unknown tensor dtype ${JSON.stringify(dtype)}`);
}

function inputSpecs(text: Json, at: string): InputSpec[] {
  if (text === undefined || text === null) return [];
  const list: Json = typeof text === 'string' ? parseJson(text, at) : text;
  if (!Array.isArray(list)) throw new SignatureFormatError(`${at}: not a list of column or tensor specs`);
  return list.map((entry: Json, i): InputSpec => {
    const where = `${at}[${i}]`;
    if (!isRecord(entry)) throw new SignatureFormatError(`${where}: not a spec`);
    const name = typeof entry.name === 'string' && entry.name !== '' ? entry.name : undefined;
    if (entry.type === 'tensor') {
      const ts = entry['tensor-spec'];
      if (!isRecord(ts)) throw new SignatureFormatError(`${where}: a tensor has no tensor-spec`);
      const shape = Array.isArray(ts.shape) ? ts.shape.map((d: Json) => (typeof d === 'number' && Number.isInteger(d) && d >= -1 ? d : -1)) : [];
      return { kind: 'tensor', ...(name !== undefined && { name }), dtype: tensorDtype(ts.dtype, where), shape };
    }
    return { kind: 'column', ...(name !== undefined && { name }), type: valueType(entry, where), required: entry.required !== false };
  });
}

function paramSpecs(text: Json, at: string): ParamSpec[] {
  if (text === undefined || text === null) return [];
  const list: Json = typeof text === 'string' ? parseJson(text, at) : text;
  if (!Array.isArray(list)) throw new SignatureFormatError(`${at}: not a list of param specs`);
  return list.map((entry: Json, i): ParamSpec => {
    const where = `${at}[${i}]`;
    if (!isRecord(entry) || typeof entry.name !== 'string' || entry.name === '') throw new SignatureFormatError(`${where}: a param has no name`);
    const shape = Array.isArray(entry.shape) ? entry.shape.map((d: Json) => (typeof d === 'number' && Number.isInteger(d) && d >= -1 ? d : -1)) : undefined;
    return { name: entry.name, type: scalarType(entry.type, where), ...(entry.default !== undefined && entry.default !== null && { default: entry.default }), ...(shape && { shape }) };
  });
}

function parseJson(text: string, at: string): Json {
  try {
    return JSON.parse(text) as Json;
  } catch {
    throw new SignatureFormatError(`${at}: not JSON`);
  }
}

/**
 * The signature in an MLmodel file's text, or undefined when it declares none. Throws SignatureFormatError
 * when the file or its signature cannot be read.
 */
export function signatureFromMlmodel(text: string, where?: string): Signature | undefined {
  let doc: Json;
  try {
    doc = parseYaml(text, { maxAliasCount: 100 }) as Json;
  } catch (err) {
    throw new SignatureFormatError(`the MLmodel file is not YAML: ${err instanceof Error ? err.message.split('\n')[0] : String(err)}`, where);
  }
  if (!isRecord(doc)) throw new SignatureFormatError('the MLmodel file is not a mapping', where);
  const sig = doc.signature;
  if (sig === undefined || sig === null) return undefined;
  if (!isRecord(sig)) throw new SignatureFormatError('signature is not a mapping', where);
  try {
    return { inputs: inputSpecs(sig.inputs, 'signature.inputs'), outputs: inputSpecs(sig.outputs, 'signature.outputs'), params: paramSpecs(sig.params, 'signature.params') };
  } catch (err) {
    if (err instanceof SignatureFormatError && where !== undefined) throw new SignatureFormatError(err.message, where);
    throw err;
  }
}
