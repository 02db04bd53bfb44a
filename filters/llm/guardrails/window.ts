import type { CompiledRule } from './rules.js';
import type { Fired } from './judge.js';

/**
 * The output rules on a streamed answer: each choice's text deltas are judged on a sliding window, the last
 * `windowChars` characters already seen followed by the new delta, so a match split across chunks (or events)
 * is caught when its last character arrives. A match longer than the window can be missed. allow_patterns is
 * satisfied once one of its patterns occurs in a choice's window, and fires at the end of a choice that never
 * had one. Each rule fires at most once per stream; a block ends the judging.
 */

/** Characters of a choice's text kept for the next delta: longer than any match a policy means to catch. */
export const DEFAULT_WINDOW_CHARS = 1024;

export class StreamGuard {
  private readonly tails = new Map<number, string>();
  private readonly allowed = new Map<number, Set<string>>();
  private readonly fired = new Set<string>();
  private blockedBy: Fired | undefined;

  constructor(
    private readonly rules: readonly CompiledRule[],
    private readonly windowChars = DEFAULT_WINDOW_CHARS,
  ) {}

  /** The block that ended the stream, once one has. */
  get blocked(): Fired | undefined {
    return this.blockedBy;
  }

  /** Judges the next delta of `choice`; returns the rules that fired on it (a block last). */
  push(choice: number, text: string): Fired[] {
    if (this.blockedBy || text === '') return [];
    const scan = (this.tails.get(choice) ?? '') + text;
    const out: Fired[] = [];
    for (const c of this.rules) {
      const r = c.rule;
      if (r.type === 'allow_patterns') {
        let seen = this.allowed.get(choice);
        if (!seen) this.allowed.set(choice, (seen = new Set()));
        if (!seen.has(r.name) && c.occursIn(scan)) seen.add(r.name);
        continue;
      }
      if (r.type === 'max_input_tokens' || this.fired.has(r.name)) continue;
      if (c.matches(scan).length === 0) continue;
      if (this.record(c, out)) break;
    }
    this.tails.set(choice, scan.length > this.windowChars ? scan.slice(scan.length - this.windowChars) : scan);
    return out;
  }

  /** The stream ended: allow_patterns rules fire for every choice that never matched them. */
  end(): Fired[] {
    if (this.blockedBy) return [];
    const out: Fired[] = [];
    for (const c of this.rules) {
      if (c.rule.type !== 'allow_patterns' || this.fired.has(c.rule.name)) continue;
      const unmet = [...this.tails.entries()].some(([choice, tail]) => tail.trim() !== '' && !(this.allowed.get(choice)?.has(c.rule.name) ?? false));
      if (unmet && this.record(c, out)) break;
    }
    return out;
  }

  /** Records a rule that fired; true when it blocks. */
  private record(c: CompiledRule, out: Fired[]): boolean {
    const f: Fired = { rule: c.rule, direction: 'output', action: c.rule.action };
    this.fired.add(c.rule.name);
    out.push(f);
    if (c.rule.action !== 'block') return false;
    this.blockedBy = f;
    return true;
  }
}
