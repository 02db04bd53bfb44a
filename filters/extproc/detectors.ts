import { findCards } from './cards.js';
import { foldForDetection } from './fold.js';

/**
 * The built-in sensitive-data detectors, for masking (masking.ts) and any other rule that looks for personal
 * data in text. Each one finds spans in time linear in the text's length: the scanners look at each
 * character a bounded number of times and the regexes have only bounded quantifiers, so a hostile body
 * cannot make them backtrack.
 *
 * They all read the folded text (fold.ts): full-width forms, Unicode spaces and dashes count as their ASCII
 * forms, invisible characters (zero-width spaces and joiners, BOM, soft hyphen, direction marks) are
 * skipped. So `４１１１ １１１１…`, `4111\u00a01111…` and `jane\u200b@example.com` are found like their plain
 * forms; spans are offsets into the original text and cover the skipped characters inside a match.
 *
 * What each detector matches, on purpose narrowly (a false positive mangles a prompt; a false negative is
 * what custom patterns are for):
 *
 * - email: `local@domain.tld` — local part of up to 64 of `A-Z a-z 0-9 . _ % + -`, a domain of at least two
 *   dot-separated labels (letters, digits, inner `-`) ending in an alphabetic TLD of two or more letters.
 * - card: a payment card number, by five rules (implemented in cards.ts):
 *   1. Digits come in groups. Two groups are joined by a gap of one or two separators of one kind: spaces
 *      (space, tab, line breaks and the Unicode spaces folded to them) or punctuation (`-` `.` `/` `_` and
 *      their full-width and dash forms). A run is a maximal chain of joined groups; anything else between
 *      digits (a letter, `,` `:` `+`, three separators, a space next to a dash) ends it.
 *   2. A candidate is the whole run or a window of whole groups in it, and its separators are all of one
 *      kind: `4111-1111.1111/1111` and `4111 1111\n1111\u00a01111` are cards, `4111 1111-1111 1111` is not.
 *      Spaces mixed with punctuation between digits is how lists of short numbers look (IP addresses,
 *      coordinates `39.90420 116.40740`, prices `42.50 13.99`, dates and times, versions), and joining those
 *      into one number is where false positives come from.
 *   3. A window inside a longer run begins and ends at a space gap, never at punctuation, which binds:
 *      `4111111111111111.5` is a decimal and `12-4111-1111-1111-1111` one dashed id. Unless the window is a
 *      single group, its groups have at least four digits and the last at least three, as printed cards do
 *      (4-4-4-4, 4-6-5, 4-4-4-4-3): `ref 12 4111 1111 1111 1111 2024` or a card followed by its expiry and
 *      CVV are found, and `415 555 2671 415 555 2672` is not read as a 13-digit Visa. A run that is the
 *      candidate itself may be grouped any way (`4 1 1 1 …`, separators at random).
 *   4. It has 13 to 19 digits, its first six are in a range a card network issues and its length is one
 *      that network issues (table in cards.ts: Visa 4 with 13/16/19 digits, Mastercard 51–55 and 2221–2720
 *      with 16, Amex 34/37 with 15, Discover, UnionPay, JCB, Diners, Maestro, Mir, RuPay, Troy, Verve,
 *      …), and it passes the Luhn check. The issuer rule is what keeps ids that pass Luhn by chance (one in
 *      ten) unmasked: no network starts with 1 or 7, few with 2, 8 or 9, so Unix times in ms/µs/ns,
 *      snowflake ids, most tracking numbers and ISBNs (978/979) are not cards. Left out on purpose: UATP
 *      (prefix 1, 15 digits: it would take every such id) and numbers without a check digit.
 *   5. The run is not glued to a word: no letter, digit or `_` of any script right before or after it
 *      (`id4111…`, `x_4111…`, `4111…ab`).
 *   From each group the longest candidate wins, leftmost first. The cost left: a number of card shape that
 *   is not a card (16 digits from 4 or 51–55, in fours, passing Luhn: one such number in ten) is masked.
 * - phone: international numbers written with a leading `+` (E.164-ish: `+` then 8–15 digits, which may be
 *   separated by single spaces, dashes, dots or parentheses), and North American numbers in the common
 *   written forms `(415) 555-2671`, `415-555-2671`, `415.555.2671`, `415 555 2671`, optionally after `1-`
 *   or `1 `, with area code and exchange starting 2–9. Neither kind is matched as the tail of a longer
 *   number (`12-415-555-2671`, a `+` number with more than 15 digits). A bare run of ten digits is NOT a
 *   phone number here: order ids and timestamps look the same.
 * - ssn: the US Social Security Number, the one national identifier built in (UK NINO, Canadian SIN, … are
 *   left to custom RE2 patterns). Numbers the SSA never issues are skipped: area 000, 666 and 900–999,
 *   group 00, serial 0000. Written `ddd-dd-dddd` or `ddd dd dddd`, it is always a match (but not as part of
 *   a longer grouped number). Written as nine bare digits, only with a word saying so: `SSN`, `SSNs`,
 *   `SS#`, `social security` or `soc sec` (any case) within 40 characters before or after it, or a JSON
 *   member name that says so (`ssn`, `customerSSN`, `social_security_number`; see DetectionContext). Why
 *   not always: a bare nine-digit number is as often an order id, a ZIP+4, a bank routing number, an EIN
 *   or an amount in cents, and the SSA's exclusions leave 89% of all nine-digit numbers looking issued, so
 *   "always" would mask nine in ten of those (test/filters/extproc/fixtures/pii-negatives.json lists such
 *   numbers and keeps them). The price: a bare SSN in prose without the word is missed.
 */

export const BUILTIN_PATTERNS = ['email', 'card', 'phone', 'ssn'] as const;
export type BuiltinPattern = (typeof BUILTIN_PATTERNS)[number];

/** A half-open range [start, end) of UTF-16 offsets in the scanned string. */
export interface Span {
  readonly start: number;
  readonly end: number;
}

const DOT = 0x2e;
const DASH = 0x2d;
const SPACE = 0x20;
const PLUS = 0x2b;
const LPAREN = 0x28;
const RPAREN = 0x29;
const AT = 0x40;

const isDigit = (c: number): boolean => c >= 0x30 && c <= 0x39;
const isAlpha = (c: number): boolean => (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a);
const isWordChar = (c: number): boolean => isDigit(c) || isAlpha(c) || c === 0x5f;
const isLocalChar = (c: number): boolean => isWordChar(c) || c === DOT || c === 0x25 || c === PLUS || c === DASH;
const isDomainChar = (c: number): boolean => isDigit(c) || isAlpha(c) || c === DOT || c === DASH;

// ---- email ----------------------------------------------------------------------------------------------------

function validDomain(domain: string): boolean {
  const labels = domain.split('.');
  if (labels.length < 2) return false;
  for (const label of labels) {
    if (label.length === 0 || label.length > 63 || label.startsWith('-') || label.endsWith('-')) return false;
  }
  return /^[A-Za-z]{2,63}$/.test(labels[labels.length - 1] as string);
}

/** Email addresses in folded text: anchored on each '@', expanded left over local-part characters and right over the domain. */
export function findEmails(text: string): Span[] {
  const spans: Span[] = [];
  let from = 0;
  let lastEnd = 0;
  for (let at = text.indexOf('@', from); at !== -1; at = text.indexOf('@', from)) {
    // The left scan stops at the previous '@' (not a local-part character) or the previous match, so each
    // character is scanned leftwards at most once.
    let start = at;
    while (start > lastEnd && at - start < 64 && isLocalChar(text.charCodeAt(start - 1))) start--;
    while (start < at && text.charCodeAt(start) === DOT) start++;
    let end = at + 1;
    while (end < text.length && end - at <= 253 && isDomainChar(text.charCodeAt(end))) end++;
    while (end > at + 1 && (text.charCodeAt(end - 1) === DOT || text.charCodeAt(end - 1) === DASH)) end--;
    const nextIsWord = end < text.length && (isWordChar(text.charCodeAt(end)) || text.charCodeAt(end) === AT);
    if (start < at && !nextIsWord && validDomain(text.slice(at + 1, end))) {
      spans.push({ start, end });
      lastEnd = end;
      from = end;
    } else {
      from = at + 1;
    }
  }
  return spans;
}

// ---- phone ----------------------------------------------------------------------------------------------------

const isPhoneSeparator = (c: number): boolean => c === SPACE || c === DASH || c === DOT;

function phoneBoundaryBefore(text: string, i: number): boolean {
  if (i === 0) return true;
  const c = text.charCodeAt(i - 1);
  if (isWordChar(c) || c === PLUS) return false;
  // Not the tail of a longer grouped number: `12-415-555-2671`, `+1 415 555 2671 1234` past its 15 digits.
  return !(isPhoneSeparator(c) && isDigit(text.charCodeAt(i - 2)));
}

function phoneBoundaryAfter(text: string, e: number): boolean {
  if (e >= text.length) return true;
  const c = text.charCodeAt(e);
  if (isWordChar(c)) return false;
  return !((c === DASH || c === DOT) && isDigit(text.charCodeAt(e + 1)));
}

/** `+` then 8–15 digits with at most two separator characters in a row; returns the end or -1. */
function matchInternational(text: string, i: number): number {
  const first = text.charCodeAt(i + 1);
  if (!isDigit(first) || first === 0x30) return -1;
  let digits = 0;
  let end = -1;
  let separators = 0;
  for (let j = i + 1; j < text.length; j++) {
    const c = text.charCodeAt(j);
    if (isDigit(c)) {
      if (++digits > 15) return -1;
      end = j + 1;
      separators = 0;
    } else if ((isPhoneSeparator(c) || c === LPAREN || c === RPAREN) && ++separators <= 2) {
      continue;
    } else {
      break;
    }
  }
  return digits >= 8 ? end : -1;
}

/** Reads `count` digits at `j`, the first one 2–9 when `nanpLead`; returns the end or -1. */
function digitsAt(text: string, j: number, count: number, nanpLead: boolean): number {
  for (let k = 0; k < count; k++) {
    const c = text.charCodeAt(j + k);
    if (!isDigit(c) || (k === 0 && nanpLead && c < 0x32)) return -1;
  }
  return j + count;
}

/** A written North American number (see the header); returns the end or -1. */
function matchNorthAmerican(text: string, i: number): number {
  let j = i;
  const afterOne = text.charCodeAt(j + 2);
  if (text.charCodeAt(j) === 0x31 && isPhoneSeparator(text.charCodeAt(j + 1)) && (isDigit(afterOne) || afterOne === LPAREN)) j += 2;
  if (text.charCodeAt(j) === LPAREN) {
    j = digitsAt(text, j + 1, 3, true);
    if (j < 0 || text.charCodeAt(j) !== RPAREN) return -1;
    j++;
    if (text.charCodeAt(j) === SPACE || text.charCodeAt(j) === DASH) j++;
  } else {
    j = digitsAt(text, j, 3, true);
    if (j < 0 || !isPhoneSeparator(text.charCodeAt(j))) return -1;
    j++;
  }
  j = digitsAt(text, j, 3, true);
  if (j < 0 || !isPhoneSeparator(text.charCodeAt(j))) return -1;
  return digitsAt(text, j + 1, 4, false);
}

/** Phone numbers in folded text, in the international and North American forms listed in the header. */
export function findPhones(text: string): Span[] {
  const spans: Span[] = [];
  for (let i = 0; i < text.length; ) {
    const c = text.charCodeAt(i);
    if ((c === PLUS || c === LPAREN || isDigit(c)) && phoneBoundaryBefore(text, i)) {
      const end = c === PLUS ? matchInternational(text, i) : matchNorthAmerican(text, i);
      if (end > 0 && phoneBoundaryAfter(text, end)) {
        spans.push({ start: i, end });
        i = end;
        continue;
      }
    }
    i++;
  }
  return spans;
}

// ---- ssn ------------------------------------------------------------------------------------------------------

/** Whether nine digits form a number the SSA issues (area, group and serial all possible). */
function issuedSsn(digits: string): boolean {
  const area = digits.slice(0, 3);
  return area !== '000' && area !== '666' && area[0] !== '9' && digits.slice(3, 5) !== '00' && digits.slice(5) !== '0000';
}

// Bounded quantifiers only, run once per text that has a bare candidate.
const SSN_WORDS = /(?<![A-Za-z0-9])(?:ssns?|ss#|social[ _-]?security|soc\.? ?sec)(?![A-Za-z])/gi;
const SSN_FIELD = /(?<![a-z])(?:ssns?|social ?security|soc ?sec)(?![a-z])/;
/** How far from a bare nine-digit number (in characters) the word saying it is an SSN may be. */
const SSN_CONTEXT_REACH = 40;

/** Whether a JSON member name says its value is an SSN: `ssn`, `customerSSN`, `social_security_number`. */
export function fieldNamesSsn(field: string): boolean {
  const words = field
    .replace(/([a-z0-9])([A-Z])/g, '$1 $2')
    .replace(/([A-Z]+)([A-Z][a-z])/g, '$1 $2')
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, ' ');
  return SSN_FIELD.test(words);
}

const isDigitAt = (text: string, i: number): boolean => isDigit(text.charCodeAt(i));
/** A separator of a number's own parts (`1.5`, `2024-01`, `1/2`, `1,000`) followed or preceded by a digit. */
const isNumberJoint = (c: number): boolean => c === DOT || c === DASH || c === 0x2f || c === 0x2c;

// Nine digits written ddd-dd-dddd, ddd dd dddd or bare, not inside a longer run of digits; bounded, so each
// attempt reads at most 13 characters.
const SSN_CANDIDATE = /(?<![0-9])(?:[0-9]{3}([- ])[0-9]{2}\1[0-9]{4}|[0-9]{9})(?![0-9])/g;

/** Whether the SSN candidate text[start, end) is glued to what surrounds it (see the header). */
function gluedSsn(text: string, start: number, end: number, sep: string | undefined): boolean {
  const before = text.charCodeAt(start - 1);
  const after = text.charCodeAt(end);
  if (isWordChar(before) || isWordChar(after)) return true;
  if (sep === '-') return before === DASH || after === DASH || (before === DOT && isDigitAt(text, start - 2)) || (after === DOT && isDigitAt(text, end + 1));
  // Spaced or bare, it must not be part of a longer number: `1.5`, `2024-01`, or groups of a spaced one.
  const joint = (c: number): boolean => isNumberJoint(c) || (sep === ' ' && c === SPACE);
  return (joint(before) && isDigitAt(text, start - 2)) || (joint(after) && isDigitAt(text, end + 1));
}

/** Offsets of the words saying "SSN" in `text`, as [start, end) pairs in order. */
function ssnWords(text: string): Span[] {
  return Array.from(text.matchAll(SSN_WORDS), (m) => ({ start: m.index, end: m.index + m[0].length }));
}

/** US Social Security Numbers in folded text, written or bare, by the rules in the header. */
export function findSsns(text: string, context?: DetectionContext): Span[] {
  const spans: Span[] = [];
  const bare: Span[] = [];
  // exec() on the one global regex: matchAll() would copy the regex on every call.
  SSN_CANDIDATE.lastIndex = 0;
  for (let m = SSN_CANDIDATE.exec(text); m !== null; m = SSN_CANDIDATE.exec(text)) {
    const start = m.index;
    const end = start + m[0].length;
    const sep = m[1];
    const digits = sep === undefined ? m[0] : m[0].replaceAll(sep, '');
    if (!issuedSsn(digits) || gluedSsn(text, start, end, sep)) continue;
    (sep === undefined ? bare : spans).push({ start, end });
  }
  if (bare.length === 0) return spans;
  if (context?.field !== undefined && fieldNamesSsn(context.field)) return mergeSorted(spans, bare);
  const words = ssnWords(text);
  if (words.length === 0) return spans;
  // Both lists are in text order: one pointer walk finds each number's nearest word.
  const named: Span[] = [];
  let w = 0;
  for (const number of bare) {
    while (w < words.length && (words[w] as Span).end + SSN_CONTEXT_REACH < number.start) w++;
    const word = words[w];
    if (word !== undefined && (word.end <= number.start || word.start - number.end <= SSN_CONTEXT_REACH)) named.push(number);
  }
  return mergeSorted(spans, named);
}

function mergeSorted(a: Span[], b: Span[]): Span[] {
  if (b.length === 0) return a;
  return [...a, ...b].sort((x, y) => x.start - y.start);
}

// ---- all of them ----------------------------------------------------------------------------------------------

/** Where a text sits, for detectors that need more than the text (a bare SSN under a member `ssn`). */
export interface DetectionContext {
  /** The JSON member name nearest above the text: its own key, or the key of the array holding it. */
  readonly field?: string;
}

/** One detector over folded text (see fold.ts). */
type FoldedDetector = (folded: string, context?: DetectionContext) => Span[];

const FOLDED_DETECTORS: Readonly<Record<BuiltinPattern, FoldedDetector>> = {
  email: findEmails,
  card: findCards,
  phone: findPhones,
  ssn: findSsns,
};

/** The spans each of `patterns` finds in `text` (folded once for all of them), as offsets into `text`. */
export function detectAll(text: string, patterns: readonly BuiltinPattern[], context?: DetectionContext): Span[][] {
  const folded = foldForDetection(text);
  const found: Span[][] = [];
  for (const p of patterns) {
    const spans = FOLDED_DETECTORS[p](folded.text, context);
    if (folded.changed) for (let i = 0; i < spans.length; i++) spans[i] = folded.original(spans[i] as Span);
    found.push(spans);
  }
  return found;
}

/** Each built-in detector by its policy name, over any text (folding it first). */
export const DETECTORS: Readonly<Record<BuiltinPattern, (text: string, context?: DetectionContext) => Span[]>> = {
  email: (text, context) => detectAll(text, ['email'], context)[0] as Span[],
  card: (text, context) => detectAll(text, ['card'], context)[0] as Span[],
  phone: (text, context) => detectAll(text, ['phone'], context)[0] as Span[],
  ssn: (text, context) => detectAll(text, ['ssn'], context)[0] as Span[],
};
