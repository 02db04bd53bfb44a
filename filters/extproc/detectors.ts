/**
 * The built-in sensitive-data detectors. Each one finds spans in a decoded string in time linear in its
 * length: the scanners below look at each character a bounded number of times, and the one regex (SSN) has
 * only bounded quantifiers, so a hostile body cannot make them backtrack.
 *
 * What each detector matches, on purpose narrowly (a false positive mangles a prompt; a false negative is
 * what custom patterns are for):
 *
 * - email: `local@domain.tld` — local part of up to 64 of `A-Z a-z 0-9 . _ % + -`, a domain of at least two
 *   dot-separated labels (letters, digits, inner `-`) ending in an alphabetic TLD of two or more letters.
 * - card: 13–19 digits, optionally grouped by single spaces or dashes (`4111 1111 1111 1111`,
 *   `3782-822463-10005`), passing the Luhn check and not all zeros. A run of more than 19 digits is searched
 *   for a 13–19 digit stretch of whole groups that passes Luhn; one that is glued to letters is skipped.
 * - phone: international numbers written with a leading `+` (E.164-ish: `+` then 8–15 digits, which may be
 *   separated by single spaces, dashes, dots or parentheses), and North American numbers in the common
 *   written forms `(415) 555-2671`, `415-555-2671`, `415.555.2671`, `415 555 2671`, optionally after `1-`
 *   or `1 `, with area code and exchange starting 2–9. Neither kind is matched as the tail of a longer
 *   number (`12-415-555-2671`, a `+` number with more than 15 digits). A bare run of ten digits is NOT a phone number here:
 *   order ids and timestamps look the same.
 * - ssn: the one national identifier built in, the US Social Security Number, written `ddd-dd-dddd`.
 *   Numbers the SSA never issues are skipped: area 000, 666 and 900–999, group 00, serial 0000. Undashed
 *   nine-digit SSNs are not matched (indistinguishable from other numbers); other countries' identifiers
 *   (UK NINO, Canadian SIN, …) are left to custom RE2 patterns.
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

/** Email addresses: anchored on each '@', expanded left over local-part characters and right over the domain. */
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

// ---- card -----------------------------------------------------------------------------------------------------

/** The Luhn (mod 10) check over the digits of text[start, end), skipping separators. */
export function luhnValid(text: string, start: number, end: number): boolean {
  let sum = 0;
  let double = false;
  let nonZero = false;
  for (let i = end - 1; i >= start; i--) {
    const c = text.charCodeAt(i);
    if (!isDigit(c)) continue;
    let d = c - 0x30;
    if (d !== 0) nonZero = true;
    if (double) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
    double = !double;
  }
  return nonZero && sum % 10 === 0;
}

/** True when the character at `i` glues a number to a word or a decimal (`x4111…`, `1.4111…`). */
function gluedAt(text: string, i: number, towards: -1 | 1): boolean {
  if (i < 0 || i >= text.length) return false;
  const c = text.charCodeAt(i);
  if (isWordChar(c)) return true;
  return c === DOT && isDigit(text.charCodeAt(i + towards));
}

/** Payment card numbers: 13–19 digits in groups separated by single spaces or dashes, Luhn-valid. */
export function findCards(text: string): Span[] {
  const spans: Span[] = [];
  const n = text.length;
  let i = 0;
  while (i < n) {
    if (!isDigit(text.charCodeAt(i))) {
      i++;
      continue;
    }
    // One run: maximal digit groups joined by single separators.
    const starts: number[] = [];
    const ends: number[] = [];
    let j = i;
    for (;;) {
      const groupStart = j;
      while (j < n && isDigit(text.charCodeAt(j))) j++;
      starts.push(groupStart);
      ends.push(j);
      const sep = text.charCodeAt(j);
      if (j + 1 < n && (sep === SPACE || sep === DASH) && isDigit(text.charCodeAt(j + 1))) j++;
      else break;
    }
    const last = starts.length - 1;
    const leftGlued = gluedAt(text, i - 1, -1);
    const rightGlued = gluedAt(text, j, 1);
    // At most 19 digits per candidate, so each group starts O(19) candidates: linear overall.
    for (let g = 0; g <= last; ) {
      let best = -1;
      if (!(g === 0 && leftGlued)) {
        let digits = 0;
        for (let h = g; h <= last; h++) {
          digits += (ends[h] as number) - (starts[h] as number);
          if (digits > 19) break;
          if (digits >= 13 && !(h === last && rightGlued) && luhnValid(text, starts[g] as number, ends[h] as number)) best = h;
        }
      }
      if (best >= 0) {
        spans.push({ start: starts[g] as number, end: ends[best] as number });
        g = best + 1;
      } else {
        g++;
      }
    }
    i = j;
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

/** Phone numbers in the international and North American forms listed in the header. */
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

// Bounded quantifiers only: each attempt reads at most 11 characters.
const SSN = /(?<![A-Za-z0-9_-])(?!000|666|9)\d{3}-(?!00)\d{2}-(?!0000)\d{4}(?![A-Za-z0-9_-])/g;

/** US Social Security Numbers written ddd-dd-dddd, skipping never-issued numbers. */
export function findSsns(text: string): Span[] {
  if (!text.includes('-')) return [];
  const spans: Span[] = [];
  for (const m of text.matchAll(SSN)) spans.push({ start: m.index, end: m.index + m[0].length });
  return spans;
}

/** Each built-in detector by its policy name. */
export const DETECTORS: Readonly<Record<BuiltinPattern, (text: string) => Span[]>> = {
  email: findEmails,
  card: findCards,
  phone: findPhones,
  ssn: findSsns,
};
