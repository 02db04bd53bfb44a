import type { InputSpec } from '../contract/signature.js';
import type { GatewayIR } from '../ir/types.js';

/**
 * What each routed version's own cluster does to requests (signature validation, protocol conversion) and
 * whether its signature is known: /debug/signatures, and the VERSION PROCESSING table of `flowgate status`.
 * A version that should be validated but has no signature passes requests unchecked and is flagged here.
 */

export interface VersionProcessingStatus {
  readonly model: string;
  readonly version: string;
  /** What the version's server speaks. */
  readonly protocol: string;
  readonly validateInput: boolean;
  readonly convert: boolean;
  readonly signature: 'found' | 'none' | 'unreadable' | 'pending';
  readonly reason?: string;
  /** The signature's inputs, as `name: type`. */
  readonly inputs?: readonly string[];
  /** Set when requests pass unchecked although the model asks for validation. */
  readonly unchecked: boolean;
}

function specText(s: InputSpec): string {
  if (s.kind === 'tensor') return `${s.name ?? '(tensor)'}: ${s.dtype}[${s.shape.map((d) => (d === -1 ? 'any' : d)).join(', ')}]`;
  const t = s.type.kind === 'scalar' ? s.type.type : s.type.kind;
  return `${s.name ?? '(column)'}: ${t}${s.required ? '' : '?'}`;
}

/** Every processed version of the IR, in model and version order. */
export function signatureReport(ir: GatewayIR | undefined | null): VersionProcessingStatus[] {
  const out: VersionProcessingStatus[] = [];
  for (const m of ir?.models ?? []) {
    const seen = new Set<string>();
    for (const v of [...m.live, ...(m.mirror ? [m.mirror] : [])]) {
      const p = v.processing;
      if (!p || seen.has(v.version)) continue;
      seen.add(v.version);
      const sig = p.signature;
      out.push({
        model: m.name,
        version: v.version,
        protocol: p.protocol,
        validateInput: p.validateInput,
        convert: p.convert,
        signature: sig.status,
        ...(sig.status === 'unreadable' && { reason: sig.reason }),
        ...(sig.status === 'found' && { inputs: sig.signature.inputs.map(specText) }),
        unchecked: p.validateInput && sig.status !== 'found',
      });
    }
  }
  return out;
}
