import { segmentAccepts, type PathSegment, type Step } from './json-path.js';

/**
 * Rewrites a JSON document that JSON.parse has already accepted, copying every byte it does not mask: number
 * literals keep their precision (a 20-digit id survives), key order and formatting stay as the client sent
 * them, and an unchanged document comes back as the very same string. Only an object that loses a member is
 * re-serialised, with members joined by ',' and no whitespace between them.
 *
 * Keys are rewritten too (a card number or an e-mail address used as a key), but field rules always match
 * the keys as sent. Masking can make two different keys of one object equal (two cards both become
 * `[CARD]`), which would make a JSON parser keep only the last: the walk keeps them distinct by appending
 * `#2`, `#3`, … to the second and later ones, in document order, skipping any name the object already has
 * (`{"4111…": 1, "5500…": 2}` → `{"[CARD]": 1, "[CARD]#2": 2}`). Equal keys as sent stay equal.
 *
 * Field rules are matched as the walk goes down: each node carries the rules whose leading segments its path
 * has matched so far, so a document is walked once whatever the number of rules.
 */

export type ValueMode = 'replace' | 'last4' | 'hash';

export interface FieldRule {
  readonly segments: readonly PathSegment[];
  readonly mode: ValueMode | 'remove';
}

/** A scalar under a field rule: a decoded string, or a number/true/false literal as written. */
export type Leaf = { readonly kind: 'string'; readonly value: string } | { readonly kind: 'literal'; readonly text: string };

/**
 * What the walk asks of its caller. `steps` is where a value sits, with keys as the output shows them
 * (masked, before any `#n` suffix); `field` is the nearest member name above the value as sent (its key,
 * or its array's key).
 */
export interface WalkHooks {
  /** The masked JSON text of one scalar selected by a field rule. */
  maskLeaf(leaf: Leaf, mode: ValueMode): string;
  /** The pattern-masked form of a string value outside every field rule, or undefined when nothing matched. */
  scanString(value: string, steps: readonly Step[], field: string | undefined): string | undefined;
  /** The JSON text replacing a number literal outside every field rule, or undefined to keep it. */
  scanNumber(literal: string, steps: readonly Step[], field: string | undefined): string | undefined;
  /** The masked form of an object key in the object at `steps`, or undefined when nothing matched. */
  scanKey(key: string, steps: readonly Step[]): string | undefined;
  /** A field rule selected the value at `steps`. */
  selected(steps: readonly Step[]): void;
}

/** Thrown for documents nested deeper than the walk allows; JSON.parse accepts them but the stack may not. */
export class NestingTooDeep extends Error {
  constructor(readonly limit: number) {
    super(`the body is nested more than ${limit} levels deep`);
  }
}

const MAX_DEPTH = 512;

/** One field rule's progress: its index and how many of its segments the current path has matched. */
interface RuleState {
  readonly rule: number;
  readonly matched: number;
}

const NO_STATES: readonly RuleState[] = [];

/** A walk's answer for one value: undefined = unchanged, null = remove it, string = its new JSON text. */
type Rewritten = string | undefined | null;

interface Member {
  readonly keyStart: number;
  readonly keyEnd: number;
  readonly valueStart: number;
  readonly valueEnd: number;
  readonly out: Rewritten;
  /** An object member's key as sent (decoded) and, when patterns matched in it, its masked form. */
  readonly key?: string;
  readonly maskedKey?: string;
  /** The JSON text of the key in the output, when it differs from the one sent. */
  keyOut?: string;
}

const isSpace = (c: number): boolean => c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09;
const QUOTE = 0x22;
const BACKSLASH = 0x5c;

/** The document with every field rule and string hook applied; the input text itself when nothing changed. */
export function rewriteJson(text: string, rules: readonly FieldRule[], hooks: WalkHooks): string {
  const walk = new Walk(text, rules, hooks);
  const initial = rules.map((_, rule) => ({ rule, matched: 0 }));
  walk.skipSpace();
  const start = walk.pos;
  const out = walk.value(initial, undefined, 0);
  if (out === undefined) return text;
  if (out === null) return `${text.slice(0, start)}null${text.slice(walk.pos)}`;
  return text.slice(0, start) + out + text.slice(walk.pos);
}

class Walk {
  pos = 0;
  private readonly steps: Step[] = [];
  /** Member names as sent, from the root down to the current value. */
  private readonly fields: string[] = [];

  constructor(
    private readonly text: string,
    private readonly rules: readonly FieldRule[],
    private readonly hooks: WalkHooks,
  ) {}

  skipSpace(): void {
    while (isSpace(this.text.charCodeAt(this.pos))) this.pos++;
  }

  /** Rewrites the value at pos (no leading space) and leaves pos just after it. */
  value(states: readonly RuleState[], forced: ValueMode | undefined, depth: number): Rewritten {
    const c = this.text.charCodeAt(this.pos);
    if (c === 0x7b || c === 0x5b) {
      if (depth >= MAX_DEPTH) throw new NestingTooDeep(MAX_DEPTH);
      return c === 0x7b ? this.object(states, forced, depth + 1) : this.array(states, forced, depth + 1);
    }
    if (c === QUOTE) {
      const value = this.string();
      if (forced !== undefined) return this.hooks.maskLeaf({ kind: 'string', value }, forced);
      const masked = this.hooks.scanString(value, this.steps, this.field());
      return masked === undefined ? undefined : JSON.stringify(masked);
    }
    const start = this.pos;
    while (this.pos < this.text.length && !this.endsLiteral(this.text.charCodeAt(this.pos))) this.pos++;
    const literal = this.text.slice(start, this.pos);
    // null hides nothing, so it stays null under every mode.
    if (literal === 'null') return undefined;
    if (forced !== undefined) return this.hooks.maskLeaf({ kind: 'literal', text: literal }, forced);
    return c === 0x74 || c === 0x66 ? undefined : this.hooks.scanNumber(literal, this.steps, this.field());
  }

  private field(): string | undefined {
    return this.fields[this.fields.length - 1];
  }

  /** The value under `step`, after matching the field rules one segment further. */
  private child(step: Step, states: readonly RuleState[], forced: ValueMode | undefined, depth: number): Rewritten {
    if (forced !== undefined || states.length === 0) return this.value(NO_STATES, forced, depth);
    let next: RuleState[] | undefined;
    let selected = -1;
    for (const { rule, matched } of states) {
      const segments = (this.rules[rule] as FieldRule).segments;
      if (!segmentAccepts(segments[matched] as PathSegment, step)) continue;
      if (matched + 1 === segments.length) {
        if (selected < 0 || rule < selected) selected = rule;
      } else {
        (next ??= []).push({ rule, matched: matched + 1 });
      }
    }
    if (selected < 0) return this.value(next ?? NO_STATES, undefined, depth);
    this.hooks.selected(this.steps);
    const mode = (this.rules[selected] as FieldRule).mode;
    if (mode !== 'remove') return this.value(NO_STATES, mode, depth);
    this.skipValue();
    return null;
  }

  private object(states: readonly RuleState[], forced: ValueMode | undefined, depth: number): Rewritten {
    const open = this.pos++;
    const members: Member[] = [];
    let changed = false;
    let removed = false;
    let renamed = false;
    this.skipSpace();
    while (this.text.charCodeAt(this.pos) !== 0x7d) {
      const keyStart = this.pos;
      const key = this.string();
      const keyEnd = this.pos;
      const maskedKey = this.hooks.scanKey(key, this.steps);
      this.skipSpace();
      this.pos++; // ':'
      this.skipSpace();
      const valueStart = this.pos;
      this.steps.push(maskedKey ?? key);
      this.fields.push(key);
      const out = this.child(key, states, forced, depth);
      this.fields.pop();
      this.steps.pop();
      members.push({ keyStart, keyEnd, valueStart, valueEnd: this.pos, out, key, ...(maskedKey !== undefined && { maskedKey }) });
      if (maskedKey !== undefined) renamed = true;
      if (out === null) removed = true;
      else if (out !== undefined) changed = true;
      this.skipSpace();
      if (this.text.charCodeAt(this.pos) === 0x2c) this.pos++;
      this.skipSpace();
    }
    const close = this.pos++;
    if (renamed) nameMaskedKeys(members);
    if (removed) {
      const kept = members.filter((m) => m.out !== null);
      return `{${kept.map((m) => (m.keyOut ?? this.text.slice(m.keyStart, m.keyEnd)) + this.text.slice(m.keyEnd, m.valueStart) + (m.out ?? this.text.slice(m.valueStart, m.valueEnd))).join(',')}}`;
    }
    return changed || renamed ? this.splice(open, close, members) : undefined;
  }

  private array(states: readonly RuleState[], forced: ValueMode | undefined, depth: number): Rewritten {
    const open = this.pos++;
    const elements: Member[] = [];
    let changed = false;
    this.skipSpace();
    for (let index = 0; this.text.charCodeAt(this.pos) !== 0x5d; index++) {
      const valueStart = this.pos;
      this.steps.push(index);
      // A removed element becomes null, so the indices of the others (and paths naming them) stay valid.
      const out = this.child(index, states, forced, depth);
      this.steps.pop();
      if (out !== undefined) {
        changed = true;
        elements.push({ keyStart: valueStart, keyEnd: valueStart, valueStart, valueEnd: this.pos, out: out ?? 'null' });
      }
      this.skipSpace();
      if (this.text.charCodeAt(this.pos) === 0x2c) this.pos++;
      this.skipSpace();
    }
    const close = this.pos++;
    return changed ? this.splice(open, close, elements) : undefined;
  }

  /** The container text from `open` to `close` with the rewritten members put in place. */
  private splice(open: number, close: number, members: readonly Member[]): string {
    let out = '';
    let copied = open;
    for (const m of members) {
      if (m.keyOut !== undefined) {
        out += this.text.slice(copied, m.keyStart) + m.keyOut;
        copied = m.keyEnd;
      }
      if (m.out === undefined || m.out === null) continue;
      out += this.text.slice(copied, m.valueStart) + m.out;
      copied = m.valueEnd;
    }
    return out + this.text.slice(copied, close + 1);
  }

  /** Reads the string at pos, leaving pos after its closing quote, and returns its decoded value. */
  private string(): string {
    const start = this.pos;
    const escaped = this.skipString();
    return escaped ? (JSON.parse(this.text.slice(start, this.pos)) as string) : this.text.slice(start + 1, this.pos - 1);
  }

  /** Moves pos past the string at pos; true when the string has escapes to decode. */
  private skipString(): boolean {
    let i = this.pos + 1;
    let escaped = false;
    for (;;) {
      const c = this.text.charCodeAt(i);
      if (c === QUOTE) break;
      if (c === BACKSLASH) {
        escaped = true;
        i += 2;
      } else {
        i++;
      }
    }
    this.pos = i + 1;
    return escaped;
  }

  /** Moves pos past the value at pos without looking inside it: a removed value is never read. */
  private skipValue(): void {
    let depth = 0;
    do {
      const c = this.text.charCodeAt(this.pos);
      if (c === QUOTE) this.skipString();
      else if (c === 0x7b || c === 0x5b) {
        depth++;
        this.pos++;
      } else if (c === 0x7d || c === 0x5d) {
        depth--;
        this.pos++;
      } else if (isSpace(c) || c === 0x2c || c === 0x3a) this.pos++;
      else while (this.pos < this.text.length && !this.endsLiteral(this.text.charCodeAt(this.pos))) this.pos++;
    } while (depth > 0);
  }

  private endsLiteral(c: number): boolean {
    return c === 0x2c || c === 0x7d || c === 0x5d || isSpace(c);
  }
}

/**
 * Sets keyOut on every member whose key was masked, keeping the object's keys distinct (see the header):
 * a masked name already taken by another key gets the first free `#n` suffix. Linear in the members: each
 * masked name remembers the last suffix it handed out.
 */
function nameMaskedKeys(members: Member[]): void {
  const taken = new Set<string>();
  for (const m of members) if (m.maskedKey === undefined && m.key !== undefined) taken.add(m.key);
  const asSent = new Map<string, string>();
  const nextSuffix = new Map<string, number>();
  for (const m of members) {
    if (m.maskedKey === undefined || m.key === undefined) continue;
    let name = asSent.get(m.key);
    if (name === undefined) {
      name = m.maskedKey;
      let n = nextSuffix.get(m.maskedKey) ?? 1;
      while (taken.has(name)) name = `${m.maskedKey}#${++n}`;
      nextSuffix.set(m.maskedKey, n);
      taken.add(name);
      asSent.set(m.key, name);
    }
    m.keyOut = JSON.stringify(name);
  }
}
