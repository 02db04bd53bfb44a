/**
 * Text that a client chose (an xDS node id, a user agent, a peer string, a header value, an Envoy NACK
 * detail, an MLflow tag) is cut before it reaches a log line or an error message: a 5 MB node id must cost a
 * log line of a few hundred bytes, not 5 MB per line it appears in. Every such value goes through
 * `untrusted()`, so the limit is decided here once.
 */

/** The most characters of one untrusted value a log line or message carries. */
export const UNTRUSTED_MAX_CHARS = 256;

/**
 * The value cut to `max` characters, with the number of characters left out appended (`…[+5242624 chars]`),
 * so a reader knows it was cut. Undefined and null stay undefined (the log field is then left out).
 */
export function untrusted(value: string | null | undefined, max: number = UNTRUSTED_MAX_CHARS): string | undefined {
  if (value === undefined || value === null) return undefined;
  if (value.length <= max) return value;
  // Not inside a surrogate pair: a lone half would be written as an escape and look like data.
  let end = max;
  const code = value.charCodeAt(end - 1);
  if (code >= 0xd800 && code <= 0xdbff) end--;
  return `${value.slice(0, end)}…[+${value.length - end} chars]`;
}
