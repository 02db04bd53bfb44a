/**
 * The template language of pipelines (docs/pipelines.md): a step's `input` and a pipeline's `output` are
 * any JSON value in which a string may name a part of an earlier answer:
 *
 *   "${request}"                      the pipeline's request body
 *   "${request/inputs/0}"             a JSON pointer (RFC 6901) into it
 *   "${previous/predictions}"         the answer of the step before (sequential pipelines)
 *   "${steps.score/predictions/0}"    the answer of the step named score
 *
 * A string that is exactly one placeholder becomes the value it names, whatever its type; placeholders
 * inside a longer string are replaced by the value's text. The policy loader checks templates with
 * `placeholders`, the filter service renders them with `renderTemplate`: one definition for both sides.
 * This module imports nothing.
 */

export interface Placeholder {
  /** `request`, `previous`, or `steps.NAME`. */
  readonly source: string;
  /** The step name when the source is a step. */
  readonly step?: string;
  /** A JSON pointer ('' for the whole value). */
  readonly pointer: string;
  /** The placeholder as written. */
  readonly text: string;
}

const PLACEHOLDER = /\$\{([^}]*)\}/g;
const SOURCE = /^(request|previous|steps\.([a-z0-9][a-z0-9-]*))((?:\/[^]*)?)$/;

/** A placeholder's inside that is not one: the error an SRE reads. */
export class TemplateError extends Error {
  override readonly name = 'TemplateError';
}

function parse(inner: string, text: string): Placeholder {
  const m = SOURCE.exec(inner.trim());
  if (!m) throw new TemplateError(`${text} must name request, previous or steps.NAME, optionally followed by a JSON pointer like /predictions/0`);
  const pointer = m[3] ?? '';
  if (/~[^01]|~$/.test(pointer)) throw new TemplateError(`${text}: '~' in a JSON pointer must be written ~0 (for ~) or ~1 (for /)`);
  return { source: m[1] as string, ...(m[2] !== undefined && { step: m[2] }), pointer, text };
}

/** Every placeholder of a template, in document order. Throws TemplateError for a malformed one. */
export function placeholders(template: unknown): Placeholder[] {
  const out: Placeholder[] = [];
  const walk = (v: unknown): void => {
    if (typeof v === 'string') {
      for (const m of v.matchAll(PLACEHOLDER)) out.push(parse(m[1] ?? '', m[0]));
    } else if (Array.isArray(v)) {
      v.forEach(walk);
    } else if (v !== null && typeof v === 'object') {
      Object.values(v).forEach(walk);
    }
  };
  walk(template);
  return out;
}

/** The value at a JSON pointer, or undefined when the path does not exist. */
export function atPointer(doc: unknown, pointer: string): unknown {
  if (pointer === '') return doc;
  let cur: unknown = doc;
  for (const raw of pointer.slice(1).split('/')) {
    const key = raw.replaceAll('~1', '/').replaceAll('~0', '~');
    if (Array.isArray(cur)) {
      if (!/^(0|[1-9]\d*)$/.test(key)) return undefined;
      cur = cur[Number(key)];
    } else if (cur !== null && typeof cur === 'object') {
      cur = Object.prototype.hasOwnProperty.call(cur, key) ? (cur as Record<string, unknown>)[key] : undefined;
    } else {
      return undefined;
    }
    if (cur === undefined) return undefined;
  }
  return cur;
}

/** Where a placeholder's value comes from. */
export interface TemplateSources {
  readonly request: unknown;
  readonly previous: unknown;
  readonly steps: Readonly<Record<string, unknown>>;
}

/** A placeholder that names nothing in the answers it was given. */
export class MissingValueError extends Error {
  override readonly name = 'MissingValueError';
  constructor(readonly placeholder: string) {
    super(`${placeholder} names nothing: the answer has no such path`);
  }
}

/** The template with every placeholder replaced. Throws MissingValueError when one names nothing. */
export function renderTemplate(template: unknown, sources: TemplateSources): unknown {
  const value = (p: Placeholder): unknown => {
    const root = p.step !== undefined ? sources.steps[p.step] : p.source === 'previous' ? sources.previous : sources.request;
    const found = atPointer(root, p.pointer);
    if (found === undefined) throw new MissingValueError(p.text);
    return found;
  };
  const render = (v: unknown): unknown => {
    if (typeof v === 'string') {
      const whole = /^\$\{([^}]*)\}$/.exec(v);
      if (whole) return value(parse(whole[1] ?? '', v));
      return v.replace(PLACEHOLDER, (text, inner: string) => {
        const found = value(parse(inner, text));
        return typeof found === 'string' ? found : JSON.stringify(found);
      });
    }
    if (Array.isArray(v)) return v.map(render);
    if (v !== null && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, render(x)]));
    return v;
  };
  return render(template);
}
