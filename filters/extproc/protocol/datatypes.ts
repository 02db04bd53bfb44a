import type { ScalarType, TensorDtype } from '../../../src/contract/signature.js';

/**
 * OIP v2 tensor datatypes and how they meet MLflow's types: which datatype carries a column type or a
 * numpy dtype, which datatypes a signature accepts, and the datatype of JSON values nobody declared.
 */

export const OIP_DATATYPES = ['BOOL', 'UINT8', 'UINT16', 'UINT32', 'UINT64', 'INT8', 'INT16', 'INT32', 'INT64', 'FP16', 'FP32', 'FP64', 'BYTES'] as const;
export type OipDatatype = (typeof OIP_DATATYPES)[number];

const OF_SCALAR: Readonly<Record<ScalarType, OipDatatype>> = {
  boolean: 'BOOL',
  integer: 'INT32',
  long: 'INT64',
  float: 'FP32',
  double: 'FP64',
  string: 'BYTES',
  binary: 'BYTES',
  datetime: 'BYTES',
};

const OF_DTYPE: Readonly<Record<TensorDtype, OipDatatype>> = {
  bool: 'BOOL',
  int8: 'INT8',
  int16: 'INT16',
  int32: 'INT32',
  int64: 'INT64',
  uint8: 'UINT8',
  uint16: 'UINT16',
  uint32: 'UINT32',
  uint64: 'UINT64',
  float16: 'FP16',
  float32: 'FP32',
  float64: 'FP64',
  str: 'BYTES',
  bytes: 'BYTES',
  object: 'BYTES',
};

const isInt = (d: string): boolean => /^U?INT\d+$/.test(d);
const isFloat = (d: string): boolean => /^FP\d+$/.test(d);

/** The datatype that carries an MLflow column type or numpy dtype. */
export function datatypeOf(t: { scalar: ScalarType } | { dtype: TensorDtype }): OipDatatype {
  return 'scalar' in t ? OF_SCALAR[t.scalar] : OF_DTYPE[t.dtype];
}

/**
 * Whether values sent as `datatype` can be what the signature declares: numbers widen (an INT64 column
 * feeds a double, as MLflow casts it), nothing else converts.
 */
export function oipDatatypeFits(datatype: string, t: { scalar: ScalarType } | { dtype: TensorDtype }): boolean {
  const want = datatypeOf(t);
  if ('dtype' in t && t.dtype === 'object') return true;
  if (want === datatype) return true;
  if (isFloat(want)) return isFloat(datatype) || isInt(datatype);
  if (isInt(want)) return isInt(datatype);
  return false;
}

/** The datatype of undeclared JSON values: BOOL, INT64, FP64, or BYTES for strings and anything mixed. */
export function inferDatatype(values: readonly unknown[]): OipDatatype {
  if (values.length > 0 && values.every((v) => typeof v === 'boolean')) return 'BOOL';
  if (values.length > 0 && values.every((v) => typeof v === 'number')) return values.every((v) => Number.isInteger(v)) ? 'INT64' : 'FP64';
  return 'BYTES';
}
