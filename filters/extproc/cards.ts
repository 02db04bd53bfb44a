import type { Span } from './detectors.js';

/**
 * The payment-card detector. It reads folded text (fold.ts), and implements the rules stated in the header
 * of detectors.ts; the reasons for them are there, the mechanics here.
 *
 * A text is cut into runs: digit groups joined by gaps of one or two separator characters of one kind
 * (spaces/line breaks, or `- . / _`). Candidates are windows of whole groups; a window is checked against
 * the issuer table first (cheap, and it throws out most digit soup), then for length, then by Luhn. Each
 * group starts at most one window walk of at most 19 digits, so the cost is linear in the text.
 */

/** An issuer's prefix range, widened to six digits, and the card lengths it issues (bit n = length n). */
interface PrefixRange {
  readonly low: number;
  readonly high: number;
  readonly lengths: number;
}

const lengthBits = (lengths: readonly number[]): number => lengths.reduce((bits, n) => bits | (1 << n), 0);
const span = (from: number, to: number): number[] => Array.from({ length: to - from + 1 }, (_, i) => from + i);

/**
 * [prefixes, lengths] per network. A prefix is `"first-last"` or one value; both ends have the same number
 * of digits. Sources: the networks' published BIN ranges as commonly listed; lengths below 13 left out.
 */
const NETWORKS: readonly (readonly [string, readonly string[], readonly number[]])[] = [
  ['Visa', ['4'], [13, 16, 19]],
  ['Mastercard', ['51-55', '2221-2720'], [16]],
  ['American Express', ['34', '37'], [15]],
  ['Discover', ['6011', '644-649', '65'], span(16, 19)],
  ['UnionPay', ['62'], span(16, 19)],
  ['China T-Union', ['31'], [19]],
  ['JCB', ['3528-3589'], span(16, 19)],
  ['Diners Club', ['300-305', '3095', '36', '38-39'], span(14, 19)],
  ['Maestro', ['5018', '5020', '5038', '5893', '6304', '6759', '6761-6763'], span(13, 19)],
  ['Dankort', ['5019'], [16]],
  ['Mir', ['2200-2204'], span(16, 19)],
  ['RuPay', ['60', '65', '81', '82', '508'], [16]],
  ['Verve', ['506099-506198', '650002-650027'], [16, 18, 19]],
  ['Troy', ['9792'], [16]],
  ['Napas', ['9704'], [16, 19]],
  ['UzCard', ['8600'], [16]],
  ['Humo', ['9860'], [16]],
];

/** The ranges bucketed by first digit, so digit soup starting with 1, 7, … costs one array read. */
const BY_FIRST_DIGIT: readonly (readonly PrefixRange[])[] = (() => {
  const buckets: PrefixRange[][] = Array.from({ length: 10 }, () => []);
  for (const [, prefixes, lengths] of NETWORKS) {
    for (const prefix of prefixes) {
      const [first, last = first] = prefix.split('-') as [string, string?];
      const scale = 10 ** (6 - first.length);
      const range = { low: Number(first) * scale, high: (Number(last) + 1) * scale - 1, lengths: lengthBits(lengths) };
      (buckets[Number(first[0])] as PrefixRange[]).push(range);
    }
  }
  return buckets;
})();

/** The card lengths (as bits) issued under the six-digit prefix `iin`; 0 when no network uses it. */
export function issuedLengths(iin: number): number {
  let bits = 0;
  for (const range of BY_FIRST_DIGIT[Math.floor(iin / 100_000)] ?? []) if (iin >= range.low && iin <= range.high) bits |= range.lengths;
  return bits;
}

/** The Luhn (mod 10) check over digit values digits[from, to). */
export function luhnValid(digits: ArrayLike<number>, from: number, to: number): boolean {
  let sum = 0;
  let double = false;
  for (let i = to - 1; i >= from; i--) {
    let d = digits[i] as number;
    if (double) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
    double = !double;
  }
  return sum % 10 === 0;
}

const NONE = 0;
const SPACE = 1;
const PUNCT = 2;

const isDigit = (c: number): boolean => c >= 0x30 && c <= 0x39;
/** The separator kind of a character: spaces and line breaks, `- . / _`, or neither. */
function separatorKind(c: number): number {
  if (c === 0x20 || (c >= 0x09 && c <= 0x0d)) return SPACE;
  if (c === 0x2d || c === 0x2e || c === 0x2f || c === 0x5f) return PUNCT;
  return NONE;
}

const LETTER_OR_NUMBER = /[\p{L}\p{N}]/u;
/** Whether the character at `i` glues a run to a word: a letter, a digit or `_` (in any script). */
function gluedAt(text: string, i: number): boolean {
  if (i < 0 || i >= text.length) return false;
  const c = text.charCodeAt(i);
  if (c < 0x80) return isDigit(c) || c === 0x5f || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a);
  return LETTER_OR_NUMBER.test(text[i] as string);
}

/** One run's digit groups, in arrays reused across runs and calls (the detector is synchronous). */
class Run {
  /** Digit values of the whole run. */
  digits = new Uint8Array(64);
  count = 0;
  groups = 0;
  /** Per group: text offsets, index of its first digit, kind of the gap before it. */
  starts = new Int32Array(16);
  ends = new Int32Array(16);
  firstDigit = new Int32Array(16);
  gapBefore = new Uint8Array(16);

  reset(): void {
    this.count = 0;
    this.groups = 0;
  }

  /** Gives back the memory a huge run took (a hostile body can make it megabytes), keeping small arrays. */
  shrink(): void {
    if (this.digits.length > 4096) this.digits = new Uint8Array(64);
    if (this.starts.length > 1024) {
      this.starts = new Int32Array(16);
      this.ends = new Int32Array(16);
      this.firstDigit = new Int32Array(16);
      this.gapBefore = new Uint8Array(16);
    }
  }

  push(d: number): void {
    if (this.count === this.digits.length) this.digits = grow(this.digits, new Uint8Array(this.count * 2));
    this.digits[this.count++] = d;
  }

  openGroup(start: number, gap: number): void {
    const g = this.groups++;
    if (g === this.starts.length) {
      this.starts = grow(this.starts, new Int32Array(g * 2));
      this.ends = grow(this.ends, new Int32Array(g * 2));
      this.firstDigit = grow(this.firstDigit, new Int32Array(g * 2));
      this.gapBefore = grow(this.gapBefore, new Uint8Array(g * 2));
    }
    this.starts[g] = start;
    this.firstDigit[g] = this.count;
    this.gapBefore[g] = gap;
  }
}

function grow<T extends Uint8Array | Int32Array>(from: T, to: T): T {
  to.set(from);
  return to;
}

const run = new Run();

/** Reads the run starting at digit `i` into `run`; returns the offset just past its last digit. */
function readRun(text: string, i: number): number {
  run.reset();
  let j = i;
  let gap = NONE;
  for (;;) {
    run.openGroup(j, gap);
    while (j < text.length && isDigit(text.charCodeAt(j))) run.push(text.charCodeAt(j++) - 0x30);
    run.ends[run.groups - 1] = j;
    // A gap: one or two separators of a single kind, then a digit.
    const kind = separatorKind(text.charCodeAt(j));
    if (kind === NONE) return j;
    let k = j + 1;
    if (separatorKind(text.charCodeAt(k)) === kind) k++;
    if (!isDigit(text.charCodeAt(k))) return j;
    gap = kind;
    j = k;
  }
}

/** The six-digit prefix of the digits from index `from` (the run has at least six digits there). */
function iinAt(from: number): number {
  let iin = 0;
  for (let i = from; i < from + 6; i++) iin = iin * 10 + (run.digits[i] as number);
  return iin;
}

/** The longest card window of the run starting at group g, as the index of its last group, or -1. */
function longestCardFrom(g: number, last: number, leftGlued: boolean, rightGlued: boolean): number {
  const from = run.firstDigit[g] as number;
  if (run.count - from < 13 || (g === 0 && leftGlued)) return -1;
  const lengths = issuedLengths(iinAt(from));
  if (lengths === 0) return -1;
  let best = -1;
  let kind = NONE;
  // The smallest group of the window before its last one (the grouping rule for windows inside a run).
  let smallestInner = Infinity;
  for (let h = g; h <= last; h++) {
    if (h > g) {
      const gap = run.gapBefore[h] as number;
      if (kind === NONE) kind = gap;
      else if (gap !== kind) break;
      smallestInner = Math.min(smallestInner, (run.ends[h - 1] as number) - (run.starts[h - 1] as number));
    }
    const to = h === last ? run.count : (run.firstDigit[h + 1] as number);
    const length = to - from;
    if (length > 19) break;
    if (((lengths >> length) & 1) === 0) continue;
    const endsRun = h === last;
    if (endsRun ? rightGlued : run.gapBefore[h + 1] !== SPACE) continue;
    const wholeRun = g === 0 && endsRun;
    const lastGroup = (run.ends[h] as number) - (run.starts[h] as number);
    if (!wholeRun && h > g && (smallestInner < 4 || lastGroup < 3)) continue;
    if (luhnValid(run.digits, from, to)) best = h;
  }
  return best;
}

const DIGIT = /[0-9]/g;

/** Payment card numbers in folded text, by the rules in the header of detectors.ts. */
export function findCards(text: string): Span[] {
  const spans: Span[] = [];
  // The regex only jumps to the next digit, faster than a loop over every character.
  DIGIT.lastIndex = 0;
  for (let m = DIGIT.exec(text); m !== null; m = DIGIT.exec(text)) {
    const i = m.index;
    const end = readRun(text, i);
    DIGIT.lastIndex = end;
    if (run.count >= 13) {
      const last = run.groups - 1;
      const leftGlued = gluedAt(text, i - 1);
      const rightGlued = gluedAt(text, end);
      for (let g = 0; g <= last; g++) {
        // A window inside a run starts after a space gap: punctuation binds the groups around it.
        if (g > 0 && run.gapBefore[g] !== SPACE) continue;
        const h = longestCardFrom(g, last, leftGlued, rightGlued);
        if (h < 0) continue;
        spans.push({ start: run.starts[g] as number, end: run.ends[h] as number });
        g = h;
      }
    }
  }
  run.shrink();
  return spans;
}
