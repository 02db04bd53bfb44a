import type { MaskingRules, MaskMode } from '../../src/contract/filter-policy.js';
import { CustomPattern } from './custom-pattern.js';
import { BUILTIN_PATTERNS, detectAll, fieldNamesSsn, type BuiltinPattern, type DetectionContext } from './detectors.js';
import { formatPath, parseJsonPath, type Step } from './json-path.js';
import { integerDigits } from './json-number.js';
import { NestingTooDeep, rewriteJson, type FieldRule, type Leaf, type ValueMode, type WalkHooks } from './json-walk.js';
import { FIELD_MARKER, MaskTokens, cardDigits, keepLast4, patternMarker } from './mask-modes.js';

/**
 * Masking of request and response bodies as a Model's `masking` policy asks: field paths select values to
 * mask whatever they hold; the built-in detectors (detectors.ts) and custom RE2 patterns rewrite what they
 * find everywhere else:
 * - in every string value;
 * - in every object key, as text on its own (no member name around it for a bare SSN); field paths still
 *   match the keys as sent, and json-walk.ts keeps masked keys distinct;
 * - in number literals, for the card and SSN detectors: a number that is a card (`{"card": 4111111111111111}`,
 *   read from its text, so digits past 2^53 count) or an SSN under a member named like one (`{"ssn":
 *   78051120}`, leading zeros restored) becomes a string masked like one (`"[CARD]"`; `""` under remove).
 *   Custom patterns do not see numbers: a policy's `[0-9]+` written for strings would retype every number.
 * Findings say which rule fired where — never what it saw — because they go to the audit log; a key's
 * finding names the object holding the key.
 */

/** One rule that fired: `field` for a field path, a built-in pattern name, or a custom rule's name. */
export interface Finding {
  readonly rule: string;
  /** Where, as `customer.email` / `items[2].card`; `$` for the whole body. */
  readonly path: string;
}

export type MaskResult =
  | { readonly ok: true; readonly body: string; readonly changed: boolean; readonly findings: readonly Finding[] }
  | { readonly ok: false; readonly status: 400; readonly error: 'invalid_json'; readonly message: string };

export interface MaskedText {
  readonly text: string;
  readonly changed: boolean;
  readonly findings: readonly Finding[];
}

export interface BodyTooLarge {
  readonly status: 413;
  readonly error: 'body_too_large';
  readonly message: string;
}

export interface Masker {
  /** The JSON body with the rules applied, or a 400 when it is not JSON (UTF-8). Never throws. */
  maskJson(body: Uint8Array | string): MaskResult;
  /** Non-JSON text with the built-in and custom patterns applied (field paths need JSON). */
  maskText(text: string): MaskedText;
}

export interface MaskingOptions {
  /** Keys the `hash` mode; absent, a random per-process salt is used. */
  readonly salt?: string | Uint8Array;
}

/** A 413 when a body of `bytes` exceeds `maxBodyBytes`, else undefined. */
export function checkBodySize(bytes: number, maxBodyBytes: number): BodyTooLarge | undefined {
  if (bytes <= maxBodyBytes) return undefined;
  return {
    status: 413,
    error: 'body_too_large',
    message: `body of ${bytes} bytes is over this model's masking limit of ${maxBodyBytes} bytes (masking.maxBodyBytes); it cannot be inspected, so it is refused`,
  };
}

interface PatternRule {
  readonly name: string;
  readonly mode: MaskMode;
  /** Set for built-in rules, which are run together over one folded copy of the text. */
  readonly builtin?: BuiltinPattern;
  /** Set for custom rules: the prefilter may switch them off for a whole document. */
  readonly custom?: CustomPattern;
}

/** Rules to run over one text: the built-ins come first (rules[0, builtins.length)), then custom ones. */
interface RuleSet {
  readonly rules: readonly PatternRule[];
  readonly builtins: readonly BuiltinPattern[];
}

function ruleSet(rules: readonly PatternRule[]): RuleSet {
  return { rules, builtins: rules.flatMap((r) => (r.builtin === undefined ? [] : [r.builtin])) };
}

interface Hit {
  readonly start: number;
  readonly end: number;
  /** Index into the pattern rules; lower wins a tie between overlapping matches. */
  readonly rule: number;
}

/** Compiles a masking section once per policy version; throws if a custom regex does not compile under RE2. */
export function compileMasking(rules: MaskingRules, options: MaskingOptions = {}): Masker {
  const tokens = new MaskTokens(options.salt);
  const fields: FieldRule[] = rules.fields.map((f) => ({ segments: parseJsonPath(f.path), mode: f.mode ?? rules.mode }));
  // Fixed order for built-ins, so that overlapping matches resolve the same way whatever the policy lists.
  const enabled = new Set<BuiltinPattern>(rules.patterns);
  const patterns: PatternRule[] = [
    ...BUILTIN_PATTERNS.filter((p) => enabled.has(p)).map((p) => ({ name: p, mode: rules.mode, builtin: p })),
    ...rules.custom.map((c) => {
      let custom: CustomPattern;
      try {
        custom = new CustomPattern(c.name, c.regex);
      } catch (err) {
        throw new Error(`custom masking rule '${c.name}' does not compile under RE2: ${err instanceof Error ? err.message : String(err)}`);
      }
      return { name: c.name, mode: c.mode ?? rules.mode, custom };
    }),
  ];
  return new PolicyMasker(fields, patterns, tokens);
}

class PolicyMasker implements Masker {
  private readonly decoder = new TextDecoder('utf-8', { fatal: true });
  private readonly all: RuleSet;
  /** The rules that look inside number literals. */
  private readonly numberRules: RuleSet;
  private readonly ssnInNumbers: boolean;

  constructor(
    private readonly fields: readonly FieldRule[],
    private readonly patterns: readonly PatternRule[],
    private readonly tokens: MaskTokens,
  ) {
    this.all = ruleSet(patterns);
    this.numberRules = ruleSet(patterns.filter((p) => p.builtin === 'card' || p.builtin === 'ssn'));
    this.ssnInNumbers = patterns.some((p) => p.builtin === 'ssn');
  }

  maskJson(body: Uint8Array | string): MaskResult {
    let text: string;
    try {
      text = typeof body === 'string' ? body : this.decoder.decode(body);
    } catch {
      return invalidJson('the body is not valid UTF-8');
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch (err) {
      // V8's message quotes the body; only the position is passed on.
      const at = err instanceof Error ? /position (\d+)/.exec(err.message)?.[1] : undefined;
      return invalidJson(`the body is not valid JSON${at === undefined ? '' : ` (at character ${at})`}`);
    }
    const doc = new DocumentMasking(this, this.activePatterns(parsed));
    try {
      const out = rewriteJson(text, this.fields, doc);
      return { ok: true, body: out, changed: out !== text, findings: doc.findings.list };
    } catch (err) {
      if (err instanceof NestingTooDeep) return invalidJson(err.message);
      throw err;
    }
  }

  maskText(text: string): MaskedText {
    const findings = new FindingSet();
    const out = this.scan(text, [], this.all, findings);
    return { text: out ?? text, changed: out !== undefined, findings: findings.list };
  }

  /** The pattern rules that can match in this document: custom ones are ruled out by one search over all its strings. */
  private activePatterns(doc: unknown): RuleSet {
    if (!this.patterns.some((p) => p.custom?.canPrefilter)) return this.all;
    const strings: string[] = [];
    collectStrings(doc, strings, 0);
    const all = strings.join('\n');
    return ruleSet(this.patterns.filter((p) => p.custom === undefined || !p.custom.canPrefilter || p.custom.occursIn(all)));
  }

  /** The masked JSON text for a number literal that is a card or SSN, or undefined to keep it. */
  scanNumber(literal: string, steps: readonly Step[], findings: FindingSet, field: string | undefined): string | undefined {
    // Short plain literals (counts, prices, 0.2) cannot hold seven digits: skip them without parsing.
    if (this.numberRules.rules.length === 0 || (literal.length < 7 && !/[eE]/.test(literal))) return undefined;
    const digits = integerDigits(literal);
    // Nothing the number detectors find has fewer than seven digits (an SSN of area 001–009 as a number).
    if (digits === undefined || digits.length < 7) return undefined;
    const ssnField = digits.length < 9 && this.ssnInNumbers && field !== undefined && fieldNamesSsn(field);
    if (digits.length < 9 && !ssnField) return undefined;
    const masked = this.scan(ssnField ? digits.padStart(9, '0') : digits, steps, this.numberRules, findings, field);
    return masked === undefined ? undefined : JSON.stringify(masked);
  }

  /** The string with every pattern match masked, or undefined when nothing matched. */
  scan(value: string, steps: readonly Step[], set: RuleSet, findings: FindingSet, field?: string): string | undefined {
    if (value.length === 0) return undefined;
    const patterns = set.rules;
    const hits: Hit[] = [];
    if (set.builtins.length > 0) {
      const context: DetectionContext | undefined = field === undefined ? undefined : { field };
      detectAll(value, set.builtins, context).forEach((spans, rule) => {
        for (const span of spans) hits.push({ start: span.start, end: span.end, rule });
      });
    }
    for (let rule = set.builtins.length; rule < patterns.length; rule++) {
      const custom = (patterns[rule] as PatternRule).custom;
      if (custom !== undefined) for (const span of custom.findAll(value)) hits.push({ start: span.start, end: span.end, rule });
    }
    if (hits.length === 0) return undefined;
    // Leftmost first, then longest, then rule order; a match overlapping a kept one is dropped.
    hits.sort((a, b) => a.start - b.start || b.end - a.end || a.rule - b.rule);
    let out = '';
    let copied = 0;
    for (const hit of hits) {
      if (hit.start < copied) continue;
      const rule = patterns[hit.rule] as PatternRule;
      out += value.slice(copied, hit.start) + this.maskMatch(rule, value.slice(hit.start, hit.end));
      copied = hit.end;
      findings.add(rule.name, steps);
    }
    return out + value.slice(copied);
  }

  private maskMatch(rule: PatternRule, match: string): string {
    switch (rule.mode) {
      case 'remove':
        return '';
      case 'replace':
        return patternMarker(rule.name);
      case 'last4': {
        if (rule.builtin !== 'card') return keepLast4(match);
        const digits = cardDigits(match);
        return '*'.repeat(digits.length - 4) + digits.slice(-4);
      }
      case 'hash':
        // Cards and SSNs by their digits, so every way of writing one gives the same token.
        return this.tokens.hash(rule.builtin === 'card' || rule.builtin === 'ssn' ? cardDigits(match) : match);
    }
  }

  /** A field-selected scalar as a string: numbers and booleans become strings once masked. */
  maskValue(leaf: Leaf, mode: ValueMode): string {
    const value = leaf.kind === 'string' ? leaf.value : leaf.text;
    switch (mode) {
      case 'replace':
        return FIELD_MARKER;
      case 'last4':
        return keepLast4(value);
      case 'hash':
        return this.tokens.hash(value);
    }
  }
}

/** One maskJson call's side of the walk: the rules active for this document and what they found. */
class DocumentMasking implements WalkHooks {
  readonly findings = new FindingSet();
  /** Keys seen to hold nothing: keys repeat ("role", "content" in every message) and scan the same anywhere. */
  private readonly plainKeys = new Set<string>();

  constructor(
    private readonly masker: PolicyMasker,
    private readonly active: RuleSet,
  ) {}

  maskLeaf(leaf: Leaf, mode: ValueMode): string {
    return JSON.stringify(this.masker.maskValue(leaf, mode));
  }

  scanString(value: string, steps: readonly Step[], field: string | undefined): string | undefined {
    return this.masker.scan(value, steps, this.active, this.findings, field);
  }

  scanKey(key: string, steps: readonly Step[]): string | undefined {
    if (this.plainKeys.has(key)) return undefined;
    const masked = this.masker.scan(key, steps, this.active, this.findings);
    if (masked === undefined) this.plainKeys.add(key);
    return masked;
  }

  scanNumber(literal: string, steps: readonly Step[], field: string | undefined): string | undefined {
    return this.masker.scanNumber(literal, steps, this.findings, field);
  }

  selected(steps: readonly Step[]): void {
    this.findings.add('field', steps);
  }
}

function invalidJson(message: string): MaskResult {
  return { ok: false, status: 400, error: 'invalid_json', message };
}

/** Every string value and object key in a parsed document; depth-capped like the walk. */
function collectStrings(node: unknown, out: string[], depth: number): void {
  if (typeof node === 'string') out.push(node);
  else if (depth > 512 || node === null || typeof node !== 'object') return;
  else if (Array.isArray(node)) for (const item of node) collectStrings(item, out, depth + 1);
  else {
    for (const [key, item] of Object.entries(node)) {
      out.push(key);
      collectStrings(item, out, depth + 1);
    }
  }
}

/** Findings without repeats: one per rule and path, in the order first seen. */
class FindingSet {
  readonly list: Finding[] = [];
  private readonly seen = new Set<string>();

  add(rule: string, steps: readonly Step[]): void {
    const path = formatPath(steps);
    const key = `${rule}\u0000${path}`;
    if (this.seen.has(key)) return;
    this.seen.add(key);
    this.list.push({ rule, path });
  }
}
