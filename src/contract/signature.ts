import { z } from 'zod';

/**
 * A model version's MLflow signature as the filter service receives it: the column or tensor inputs, the
 * outputs and the params, normalised by the control plane from the version's MLmodel file
 * (src/registry/signatures.ts). Part of the FilterPolicy contract; imports nothing.
 *
 * MLflow's own JSON (`{"type": "double", "name": "amount", "required": true}`,
 * `{"type": "tensor", "tensor-spec": {"dtype": "float64", "shape": [-1, 4]}}`) is translated once, so the
 * validator never re-reads MLflow's spelling.
 */

/** MLflow's scalar column types (mlflow.types.DataType). */
export const SCALAR_TYPES = ['boolean', 'integer', 'long', 'float', 'double', 'string', 'binary', 'datetime'] as const;
export type ScalarType = (typeof SCALAR_TYPES)[number];

/** numpy dtypes a tensor spec may name, as MLflow writes them. */
export const TENSOR_DTYPES = ['bool', 'int8', 'int16', 'int32', 'int64', 'uint8', 'uint16', 'uint32', 'uint64', 'float16', 'float32', 'float64', 'str', 'object', 'bytes'] as const;
export type TensorDtype = (typeof TENSOR_DTYPES)[number];

/** A column's value type: a scalar, or one of MLflow's composite types (Array, Object, Map, AnyType). */
export type ValueType =
  | { readonly kind: 'scalar'; readonly type: ScalarType }
  | { readonly kind: 'array'; readonly items: ValueType }
  | { readonly kind: 'object'; readonly properties: readonly ObjectProperty[] }
  | { readonly kind: 'map'; readonly values: ValueType }
  | { readonly kind: 'any' };

export interface ObjectProperty {
  readonly name: string;
  readonly type: ValueType;
  readonly required: boolean;
}

export const valueTypeSchema: z.ZodType<ValueType> = z.lazy(() =>
  z.union([
    z.object({ kind: z.literal('scalar'), type: z.enum(SCALAR_TYPES) }),
    z.object({ kind: z.literal('array'), items: valueTypeSchema }),
    z.object({ kind: z.literal('object'), properties: z.array(z.object({ name: z.string().min(1), type: valueTypeSchema, required: z.boolean() })) }),
    z.object({ kind: z.literal('map'), values: valueTypeSchema }),
    z.object({ kind: z.literal('any') }),
  ]),
);

/** -1 is a dimension of any size (the batch dimension, usually). */
const shape = z.array(z.number().int().min(-1));

const columnSpec = z.object({ kind: z.literal('column'), name: z.string().min(1).optional(), type: valueTypeSchema, required: z.boolean() });
const tensorSpec = z.object({ kind: z.literal('tensor'), name: z.string().min(1).optional(), dtype: z.enum(TENSOR_DTYPES), shape });

/** One input or output of a signature: all of a signature's inputs are columns, or all are tensors. */
export const inputSpecSchema = z.union([columnSpec, tensorSpec]);
export type InputSpec = z.output<typeof inputSpecSchema>;
export type ColumnSpec = z.output<typeof columnSpec>;
export type TensorSpec = z.output<typeof tensorSpec>;

/** An inference param: its type, its default, and a shape ([-1] for a list) or none for one value. */
export const paramSpecSchema = z.object({ name: z.string().min(1), type: z.enum(SCALAR_TYPES), default: z.unknown().optional(), shape: shape.optional() });
export type ParamSpec = z.output<typeof paramSpecSchema>;

export const signatureSchema = z.object({
  inputs: z.array(inputSpecSchema),
  outputs: z.array(inputSpecSchema),
  params: z.array(paramSpecSchema),
});
export type Signature = z.output<typeof signatureSchema>;

/** Whether a signature's inputs are tensors (the other kind is columns; MLflow never mixes them). */
export function isTensorSignature(specs: readonly InputSpec[]): boolean {
  return specs.length > 0 && specs.every((s) => s.kind === 'tensor');
}
