import type { GuardrailRule } from '../../../src/contract/guardrails.js';
import { CustomPattern } from '../../extproc/custom-pattern.js';
import { DETECTORS, type Span } from '../../extproc/detectors.js';
import { patternMarker } from '../../extproc/mask-modes.js';
import { INJECTION_PATTERNS } from './injection.js';

/**
 * One guardrail rule compiled for the filter service: its RE2 patterns (the engine masking uses, linear in the
 * text), the masking detectors of a pii rule, or the injection list. A rule says where it matches a text, and
 * what a masked match becomes (`[EMAIL]` for a detector, as masking writes it; `[BLOCKED]` for a pattern).
 */

/** What a masked pattern match becomes. */
export const BLOCKED_MARKER = '[BLOCKED]';

/** A match and what replaces it when masked. */
export interface Hit extends Span {
  readonly marker: string;
}

export class CompiledRule {
  private readonly patterns: readonly CustomPattern[];

  constructor(readonly rule: GuardrailRule) {
    const sources = rule.type === 'prompt_injection' ? INJECTION_PATTERNS.map((p) => p.regex) : rule.patterns;
    // One alternation, one RE2 call per text: re2-wasm's cost is mostly per call. Each source keeps its own
    // flags: RE2 scopes `(?i)` to the group it is written in.
    this.patterns = sources.length === 0 ? [] : [new CustomPattern(rule.name, sources.map((s) => `(?:${s})`).join('|'))];
  }

  /** Every match in `text` (detector spans for pii), leftmost first, not overlapping. */
  matches(text: string): Hit[] {
    if (text === '') return [];
    const hits: Hit[] = [];
    if (this.rule.type === 'pii') {
      for (const d of this.rule.pii) for (const s of DETECTORS[d](text)) hits.push({ ...s, marker: patternMarker(d) });
    } else {
      for (const p of this.patterns) for (const s of p.findAll(text)) hits.push({ ...s, marker: BLOCKED_MARKER });
    }
    hits.sort((a, b) => a.start - b.start || b.end - a.end);
    const kept: Hit[] = [];
    let end = -1;
    for (const h of hits) {
      if (h.start < end) continue;
      kept.push(h);
      end = h.end;
    }
    return kept;
  }

  /** Whether any pattern occurs in `text` (allow_patterns: a text must contain one). */
  occursIn(text: string): boolean {
    return this.patterns.some((p) => p.occursIn(text));
  }
}

/** `text` with every hit replaced by its marker. */
export function masked(text: string, hits: readonly Hit[]): string {
  let out = '';
  let at = 0;
  for (const h of hits) {
    out += text.slice(at, h.start) + h.marker;
    at = h.end;
  }
  return out + text.slice(at);
}
