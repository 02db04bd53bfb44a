import { re2, type RE2 } from './re2.js';
import type { Span } from './detectors.js';

/**
 * A policy's custom masking pattern, run by RE2 (re2-wasm, the engine the policy loader validated it with), so
 * its running time is linear in the text whatever the pattern.
 *
 * Two quirks of re2-wasm shape this file. Every call re-encodes the whole input string into wasm memory, so
 * finding k matches in an n-character string by calling exec() on it k times costs O(k·n); instead each
 * search runs on a window that starts at WINDOW characters and doubles until a match ends inside it or it
 * reaches the end of the string, which keeps the total linear. And match offsets are counted in code points,
 * not UTF-16 units, so they are converted back when the text has astral characters.
 *
 * The window has one visible cost: a match is accepted as soon as it ends inside the window, so for a pattern
 * whose matches can run longer than the window (`a.*b` over kilobytes), a greedy match may stop earlier than
 * a search over the whole string would have. Masking patterns match short tokens; values up to WINDOW
 * characters are always searched whole.
 */

const WINDOW = 1024;

/** Whether the source has `^`, `$`, `\b`, `\B`, `\A` or `\z` outside a character class. */
function hasAssertions(source: string): boolean {
  let inClass = false;
  for (let i = 0; i < source.length; i++) {
    const c = source[i];
    if (c === '\\') {
      const next = source[i + 1];
      if (!inClass && (next === 'b' || next === 'B' || next === 'A' || next === 'z')) return true;
      i++;
    } else if (inClass) {
      if (c === ']') inClass = false;
    } else if (c === '[') {
      inClass = true;
      if (source[i + 1] === '^') i++;
      if (source[i + 1] === ']') i++;
    } else if (c === '^' || c === '$') {
      return true;
    }
  }
  return false;
}

const isHighSurrogate = (c: number): boolean => c >= 0xd800 && c <= 0xdbff;
const ASTRAL = /[\uD800-\uDFFF]/;

/** The UTF-16 offset reached by walking `codePoints` code points from `from`. */
function advanceCodePoints(text: string, from: number, codePoints: number): number {
  let i = from;
  for (let k = 0; k < codePoints && i < text.length; k++) i += isHighSurrogate(text.charCodeAt(i)) ? 2 : 1;
  return i;
}

/** The number of code points in text[from, to). */
function countCodePoints(text: string, from: number, to: number): number {
  let count = 0;
  for (let i = from; i < to; i += isHighSurrogate(text.charCodeAt(i)) ? 2 : 1) count++;
  return count;
}

export class CustomPattern {
  readonly name: string;
  private readonly re: RE2;
  /**
   * Without assertions, a pattern that matches inside one string also matches any text that contains that
   * string, so one search over all of a document's strings can rule the pattern out for all of them.
   */
  readonly canPrefilter: boolean;

  /** Compiles `source` as RE2; throws the RE2 error when the policy loader would have refused it. */
  constructor(name: string, source: string) {
    this.name = name;
    // re2-wasm only runs in unicode mode; 'g' makes exec() start at lastIndex.
    this.re = new (re2())(source, 'gu');
    this.canPrefilter = !hasAssertions(source);
  }

  /** Whether the pattern matches anywhere in `text`: one call, for the whole-document prefilter. */
  occursIn(text: string): boolean {
    this.re.lastIndex = 0;
    return this.re.test(text);
  }

  /** Every non-overlapping match in `text`, leftmost first, as UTF-16 spans; empty matches are skipped. */
  findAll(text: string): Span[] {
    const spans: Span[] = [];
    const astral = ASTRAL.test(text);
    let pos = 0;
    while (pos < text.length) {
      const found = this.findFrom(text, pos, astral);
      if (found === undefined) break;
      if (found.end > found.start) spans.push(found);
      const step = isHighSurrogate(text.charCodeAt(found.start)) ? 2 : 1;
      pos = Math.max(found.end, found.start + step);
    }
    return spans;
  }

  /** The first match starting at or after `pos`, searched in doubling windows (see the header). */
  private findFrom(text: string, pos: number, astral: boolean): Span | undefined {
    // One character of context before `pos`, so ^ and \b see what precedes the window.
    let context = pos;
    if (context > 0) context -= context >= 2 && isHighSurrogate(text.charCodeAt(context - 2)) ? 2 : 1;
    for (let width = WINDOW; ; width *= 2) {
      let end = Math.min(text.length, pos + width);
      if (end < text.length && isHighSurrogate(text.charCodeAt(end - 1))) end++;
      const window = text.slice(context, end);
      this.re.lastIndex = astral ? countCodePoints(text, context, pos) : pos - context;
      const m = this.re.exec(window);
      const reachedEnd = end === text.length;
      if (m === null) {
        if (reachedEnd) return undefined;
        continue;
      }
      const start = astral ? advanceCodePoints(window, 0, m.index) : m.index;
      const matchEnd = start + (m[0] ?? '').length;
      if (matchEnd < window.length || reachedEnd) return { start: context + start, end: context + matchEnd };
    }
  }
}
