/**
 * The field paths of masking rules (`customer.email`, `items[*].card`, `rows[0].ssn`), compiled to segments
 * and matched one step at a time while a JSON document is walked, so that no path is ever re-matched from
 * the root.
 */

export type PathSegment = { readonly kind: 'key'; readonly name: string } | { readonly kind: 'index'; readonly index: number } | { readonly kind: 'any' };

/** One step down the document: an object member's key or an array element's index. */
export type Step = string | number;

const SEGMENT = /\.?([A-Za-z0-9_$-]+)|\[(\*|\d+)\]/y;

/** The segments of a policy JSON path (syntax checked by the policy schema); throws on anything else. */
export function parseJsonPath(path: string): PathSegment[] {
  const segments: PathSegment[] = [];
  SEGMENT.lastIndex = 0;
  while (SEGMENT.lastIndex < path.length) {
    const at = SEGMENT.lastIndex;
    const m = SEGMENT.exec(path);
    // A leading '.' or a '.' before '[' is not part of the policy syntax.
    if (m === null || (at === 0 && path.startsWith('.'))) throw new Error(`not a masking field path: '${path}' (at character ${at + 1})`);
    const name = m[1];
    const bracket = m[2];
    if (name !== undefined) segments.push({ kind: 'key', name });
    else if (bracket === '*') segments.push({ kind: 'any' });
    else segments.push({ kind: 'index', index: Number(bracket) });
  }
  if (segments.length === 0) throw new Error('a masking field path must not be empty');
  return segments;
}

/**
 * Whether one path segment accepts one step. `[*]` accepts every array element and, as in JSONPath, every
 * object member: a masking rule errs on the side of covering more.
 */
export function segmentAccepts(segment: PathSegment, step: Step): boolean {
  switch (segment.kind) {
    case 'key':
      return typeof step === 'string' && step === segment.name;
    case 'index':
      return typeof step === 'number' && step === segment.index;
    case 'any':
      return true;
  }
}

const PLAIN_KEY = /^[A-Za-z_$][A-Za-z0-9_$-]*$/;

/** A concrete location as audit logs show it: `customer.email`, `items[2].card`, `["odd key"]`; `$` is the root. */
export function formatPath(steps: readonly Step[]): string {
  if (steps.length === 0) return '$';
  let out = '';
  for (const step of steps) {
    if (typeof step === 'number') out += `[${step}]`;
    else if (PLAIN_KEY.test(step)) out += out === '' ? step : `.${step}`;
    else out += `[${JSON.stringify(step)}]`;
  }
  return out;
}
