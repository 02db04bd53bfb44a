import type { Span } from './detectors.js';

/**
 * The form of a string that the built-in detectors read: look-alike characters folded to the ASCII ones the
 * detectors know, invisible ones dropped. It exists so that `４１１１ １１１１…` (full-width digits from an
 * IME), `4111\u00a01111…` (a no-break space pasted from a PDF), `4111–1111…` (an en dash from a word
 * processor) or `jane\u200b@example.com` (a zero-width space) are found like their plain forms, without each
 * detector knowing about Unicode.
 *
 * Every folded character comes from exactly one original one (or none, for a dropped character), so a span
 * found in the folded text maps back to the original span that covers it, including any dropped characters
 * inside it: masking replaces the invisible characters of a card along with its digits.
 *
 * Folded (and nothing else, so that the original text's meaning is never guessed at):
 * - full-width ASCII U+FF01–U+FF5E (digits, letters, `－ ． ／ ＿ ＠ ＋`…) to ASCII;
 * - spaces U+00A0, U+1680, U+2000–U+200A, U+202F, U+205F, U+3000 to ` `; U+0085, U+2028, U+2029 to `\n`;
 * - dashes U+2010–U+2015, U+2212, U+FE58, U+FE63 to `-`; U+2024, U+3002, U+FF61 to `.`; U+2044, U+2215 to `/`;
 * - dropped: soft hyphen U+00AD, U+034F, U+061C, U+180E, zero-width and direction marks U+200B–U+200F,
 *   U+202A–U+202E, U+2060–U+2064, U+2066–U+206F, variation selectors U+FE00–U+FE0F, U+FEFF.
 */

const DROP = -1;

/** [first, last, folded]: every code unit in [first, last] becomes `folded` (DROP: removed). */
const RANGES: readonly (readonly [number, number, number])[] = [
  [0x0085, 0x0085, 0x0a],
  [0x00a0, 0x00a0, 0x20],
  [0x00ad, 0x00ad, DROP],
  [0x034f, 0x034f, DROP],
  [0x061c, 0x061c, DROP],
  [0x1680, 0x1680, 0x20],
  [0x180e, 0x180e, DROP],
  [0x2000, 0x200a, 0x20],
  [0x200b, 0x200f, DROP],
  [0x2010, 0x2015, 0x2d],
  [0x2024, 0x2024, 0x2e],
  [0x2028, 0x2029, 0x0a],
  [0x202a, 0x202e, DROP],
  [0x202f, 0x202f, 0x20],
  [0x2044, 0x2044, 0x2f],
  [0x205f, 0x205f, 0x20],
  [0x2060, 0x2064, DROP],
  [0x2066, 0x206f, DROP],
  [0x2212, 0x2212, 0x2d],
  [0x2215, 0x2215, 0x2f],
  [0x3000, 0x3000, 0x20],
  [0x3002, 0x3002, 0x2e],
  [0xfe00, 0xfe0f, DROP],
  [0xfe58, 0xfe58, 0x2d],
  [0xfe63, 0xfe63, 0x2d],
  [0xfeff, 0xfeff, DROP],
  [0xff61, 0xff61, 0x2e],
];

const hex = (c: number): string => `\\u${c.toString(16).padStart(4, '0')}`;
/** Any character that folds: one regex test lets the common text (nothing to fold) skip the copy. */
const FOLDABLE = new RegExp(`[${RANGES.map(([a, b]) => (a === b ? hex(a) : `${hex(a)}-${hex(b)}`)).join('')}\\uff01-\\uff5e]`);

/** A lookup over U+0080–U+FFFF: the folded code unit, DROP, or 0 for "unchanged". */
const TABLE = (() => {
  const table = new Int32Array(0x10000);
  for (const [first, last, folded] of RANGES) for (let c = first; c <= last; c++) table[c] = folded;
  for (let c = 0xff01; c <= 0xff5e; c++) table[c] = c - 0xfee0;
  return table;
})();

export interface FoldedText {
  /** The folded string the detectors scan. */
  readonly text: string;
  /** False when nothing folded: `text` is the original and spans need no mapping. */
  readonly changed: boolean;
  /** The span of the original string that the folded span came from. */
  original(span: Span): Span;
}

const unchanged = (span: Span): Span => span;

/** The folded form of `text` (see the header), with the way back to original offsets. */
export function foldForDetection(text: string): FoldedText {
  if (!FOLDABLE.test(text)) return { text, changed: false, original: unchanged };
  const codes = new Uint16Array(text.length);
  // origin[i] is the original offset of folded unit i; one extra slot for the end.
  const origin = new Int32Array(text.length + 1);
  let n = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    const folded = c < 0x80 ? 0 : (TABLE[c] as number);
    if (folded === DROP) continue;
    codes[n] = folded === 0 ? c : folded;
    origin[n++] = i;
  }
  origin[n] = text.length;
  let folded = '';
  // fromCharCode with a spread argument list is bounded by the stack, so the copy goes in slices.
  for (let i = 0; i < n; i += 8192) folded += String.fromCharCode(...codes.subarray(i, Math.min(n, i + 8192)));
  return {
    text: folded,
    changed: true,
    original: (span) => ({ start: origin[span.start] as number, end: span.end > span.start ? (origin[span.end - 1] as number) + 1 : (origin[span.start] as number) }),
  };
}
