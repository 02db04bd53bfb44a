import { createHmac, randomBytes } from 'node:crypto';

/**
 * What each masking mode turns a secret into. Nothing here keeps or logs the input.
 *
 * - replace: a marker — `[REDACTED]` for field values, `[EMAIL]`/`[CARD]`/`[PHONE]`/`[SSN]`/`[<NAME>]` for
 *   pattern matches.
 * - last4: the last four characters kept, every other one `*`; cards keep only digits
 *   (`4111 1111 1111 1111` → `************1111`). A value of four characters or fewer becomes all `*`, since
 *   "the last four" of it would be all of it.
 * - hash: `sha256:` and the first 16 hex digits of HMAC-SHA256(salt, value). A keyed HMAC rather than a
 *   salted plain hash; either way the same value gives the same token under one salt, so masked logs still
 *   join on it, and without the salt the token cannot be checked against guesses (card numbers and SSNs are
 *   few enough to enumerate). Cards and SSNs are hashed by their digits, so `4111-1111-…`, `4111 1111 …`
 *   and `４１１１…` agree, as do `078-05-1120` and the number 78051120 under `ssn`.
 * - remove: the empty string for a pattern match; field values are removed by the JSON walk.
 */

/** The salt used when the caller configures none: random per process, so tokens join only within one run. */
const PROCESS_SALT = randomBytes(32);

export class MaskTokens {
  private readonly salt: Uint8Array;

  constructor(salt?: string | Uint8Array) {
    this.salt = salt === undefined ? PROCESS_SALT : typeof salt === 'string' ? Buffer.from(salt, 'utf8') : salt;
  }

  /** `sha256:` + 16 hex digits of the keyed hash of `value`. */
  hash(value: string): string {
    return `sha256:${createHmac('sha256', this.salt).update(value, 'utf8').digest('hex').slice(0, 16)}`;
  }
}

/** Every code point but the last four as `*` (all of them when there are four or fewer). */
export function keepLast4(value: string): string {
  const chars = Array.from(value);
  if (chars.length <= 4) return '*'.repeat(chars.length);
  return '*'.repeat(chars.length - 4) + chars.slice(-4).join('');
}

/** The digits of a card number or SSN as ASCII (full-width ones folded), separators dropped. */
export function cardDigits(text: string): string {
  return text.replace(/[\uff10-\uff19]/g, (d) => String.fromCharCode(d.charCodeAt(0) - 0xfee0)).replace(/[^0-9]/g, '');
}

/** The replace-mode marker of a pattern rule: `[EMAIL]`, `[EMPLOYEE-ID]`. */
export function patternMarker(rule: string): string {
  return `[${rule.toUpperCase()}]`;
}

export const FIELD_MARKER = '[REDACTED]';
