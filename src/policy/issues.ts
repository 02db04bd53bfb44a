import type { z } from 'zod';

/**
 * PolicyIssue: one thing wrong with the policy directory, placed at the file, line and column a person must
 * edit. Every stage that judges the policy (load, schema, cross-checks, and later the IR) speaks in these.
 */

export type PolicyIssueCode =
  /** The directory or a file could not be read. */
  | 'io'
  /** YAML syntax (including duplicate keys). */
  | 'yaml'
  /** A value breaks the schema: type, range, format, a regex that RE2 rejects. */
  | 'schema'
  /** A key the schema does not know (usually a typo). */
  | 'unknown-key'
  /** A name given twice where it must be unique. */
  | 'duplicate'
  /** A name that refers to something that does not exist. */
  | 'reference'
  /** Two settings that cannot both hold (routes claimed twice, a port bound twice). */
  | 'conflict';

export interface PolicyIssue {
  /** Path relative to the policy directory, '/'-separated; '' when the issue is about the directory. */
  readonly file: string;
  /** 1-based; 0 when the issue is about a whole file or the directory. */
  readonly line: number;
  /** 1-based; 0 with line 0. */
  readonly col: number;
  /** Where inside the document: `traffic.canary.weight`, `routes[0].listener`; '' for the document itself. */
  readonly path: string;
  readonly message: string;
  readonly code: PolicyIssueCode;
}

/** A path inside one YAML document: keys and list indexes, outermost first. */
export type PolicyPath = readonly (string | number)[];

/** Renders a path the way people read it: `routes[0].listener`, `access.versions.challenger`. */
export function pathText(path: PolicyPath): string {
  let out = '';
  for (const seg of path) {
    if (typeof seg === 'number') out += `[${seg}]`;
    else out += out === '' ? seg : `.${seg}`;
  }
  return out;
}

/** Orders issues by file, line, column, then message, so output is stable and reads top to bottom. */
export function compareIssues(a: PolicyIssue, b: PolicyIssue): number {
  if (a.file !== b.file) return a.file < b.file ? -1 : 1;
  if (a.line !== b.line) return a.line - b.line;
  if (a.col !== b.col) return a.col - b.col;
  if (a.path !== b.path) return a.path < b.path ? -1 : 1;
  return a.message < b.message ? -1 : a.message > b.message ? 1 : 0;
}

/** Optimal-string-alignment distance: Levenshtein plus adjacent swaps, so 'wieght' is one edit from 'weight'. */
function editDistance(a: string, b: string): number {
  const rows: number[][] = [];
  for (let i = 0; i <= a.length; i++) {
    const row: number[] = [i];
    for (let j = 1; j <= b.length; j++) row.push(i === 0 ? j : 0);
    rows.push(row);
  }
  const at = (i: number, j: number): number => rows[i]?.[j] ?? Number.MAX_SAFE_INTEGER;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let d = Math.min(at(i - 1, j) + 1, at(i, j - 1) + 1, at(i - 1, j - 1) + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d = Math.min(d, at(i - 2, j - 2) + 1);
      (rows[i] as number[])[j] = d;
    }
  }
  return at(a.length, b.length);
}

/** The candidate a typo most likely meant, or undefined when none is close enough to be an obvious typo. */
export function closest(word: string, candidates: Iterable<string>): string | undefined {
  const lower = word.toLowerCase();
  let best: string | undefined;
  let bestDistance = Number.MAX_SAFE_INTEGER;
  for (const c of candidates) {
    if (c === word) continue;
    const d = c.toLowerCase() === lower ? 0 : editDistance(lower, c.toLowerCase());
    // A third of the length keeps 'port' from suggesting 'path' while still catching 'timout' -> 'timeout'.
    if (d <= Math.max(1, Math.floor(c.length / 3)) && d < bestDistance) {
      best = c;
      bestDistance = d;
    }
  }
  return best;
}

/** ` (did you mean 'x'?)` or '' — the tail every "unknown name" message shares. */
export function didYouMean(word: string, candidates: Iterable<string>): string {
  const guess = closest(word, candidates);
  return guess === undefined ? '' : ` (did you mean '${guess}'?)`;
}

/** A value as it appears in a message: strings quoted, long ones cut, absent ones named. */
export function shown(value: unknown): string {
  if (value === undefined) return 'nothing';
  if (value === null) return 'an empty value';
  if (typeof value === 'string') return JSON.stringify(value.length > 60 ? `${value.slice(0, 57)}...` : value);
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'a mapping';
  if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint') return String(value);
  return typeof value;
}

const TYPE_NAMES: Readonly<Record<string, string>> = {
  object: 'a mapping',
  array: 'a list',
  string: 'a string',
  number: 'a number',
  int: 'a whole number',
  boolean: 'true or false',
};

/** Keys of the strict object that raised an unrecognized_keys issue, read from the schema zod hands the map. */
function knownKeys(inst: unknown): string[] {
  const def = (inst as { _zod?: { def?: { shape?: Record<string, unknown> } } } | undefined)?._zod?.def;
  return def?.shape ? Object.keys(def.shape) : [];
}

/** Separates per-key messages of one unrecognized_keys issue; load.ts splits them back into one issue per key. */
export const KEY_MESSAGE_SEPARATOR = '\n';

/**
 * The error map every policy parse uses: messages that say what is allowed and what was found. Schemas that
 * know better (durations, names) set their own message, which takes precedence over this map.
 */
export const policyErrorMap: z.core.$ZodErrorMap = (iss) => {
  switch (iss.code) {
    case 'invalid_type':
      if (iss.input === undefined) return 'is required';
      return `must be ${TYPE_NAMES[iss.expected] ?? iss.expected} (got ${shown(iss.input)})`;
    case 'unrecognized_keys': {
      const known = knownKeys(iss.inst);
      return iss.keys
        .map((k) => {
          const guess = closest(k, known);
          if (guess !== undefined) return `unknown key '${k}' (did you mean '${guess}'?)`;
          return known.length > 0 ? `unknown key '${k}' (known keys: ${known.join(', ')})` : `unknown key '${k}'`;
        })
        .join(KEY_MESSAGE_SEPARATOR);
    }
    case 'invalid_value': {
      const allowed = iss.values.map((v) => String(v));
      const got = iss.input;
      const hint = typeof got === 'string' ? didYouMean(got, allowed) : '';
      return `must be one of ${allowed.join(', ')} (got ${shown(got)})${hint}`;
    }
    case 'too_small':
      if (iss.origin === 'array') return `must have at least ${String(iss.minimum)} entr${iss.minimum === 1 ? 'y' : 'ies'}`;
      if (iss.origin === 'string') return iss.minimum === 1 ? 'must not be empty' : `must be at least ${String(iss.minimum)} characters`;
      return `must be at least ${String(iss.minimum)} (got ${shown(iss.input)})`;
    case 'too_big':
      if (iss.origin === 'array') return `must have at most ${String(iss.maximum)} entries`;
      if (iss.origin === 'string') return `must be at most ${String(iss.maximum)} characters`;
      return `must be at most ${String(iss.maximum)} (got ${shown(iss.input)})`;
    case 'invalid_format':
      return `has an invalid format (got ${shown(iss.input)})`;
    case 'invalid_union':
      return `does not match any allowed form (got ${shown(iss.input)})`;
    default:
      return undefined;
  }
};
