import { isIP } from 'node:net';
import { re2, type RE2 } from '../re2.js';
import { z } from 'zod';
import { shown } from './issues.js';

/**
 * The field types policy documents are made of: durations, names, addresses, ranges, RE2 regexes. Each one
 * carries its own error message, because "must match /^[a-z0-9]…$/" helps nobody editing YAML at 2 a.m.
 */

/** A duration after parsing: whole milliseconds. */
export type Millis = number;

const UNIT_MS = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;
const DURATION = /^(\d+)(ms|s|m|h|d)$/;

type Raw = { input: unknown };
const got = (iss: Raw): string => shown(iss.input);
/** Leaves a missing value to the shared "is required" message. */
const unlessMissing =
  (message: (iss: Raw) => string) =>
  (iss: Raw): string | undefined =>
    iss.input === undefined ? undefined : message(iss);

/** Parses "250ms" | "5s" | "2m" | "1h" | "1d" to milliseconds, or undefined when it is not one. */
export function parseDuration(text: string): Millis | undefined {
  const m = DURATION.exec(text.trim());
  if (!m) return undefined;
  return Number(m[1]) * UNIT_MS[m[2] as keyof typeof UNIT_MS];
}

/** A duration string in [min, max] milliseconds, output as milliseconds. */
export function duration(range: { min?: Millis; max?: Millis } = {}): z.ZodPipe<z.ZodString, z.ZodTransform<number, string>> {
  const min = range.min ?? 1;
  const max = range.max ?? 7 * UNIT_MS.d;
  const wanted = 'a duration like 250ms, 5s, 2m, 1h or 1d';
  return z
    .string({
      error: unlessMissing((iss) =>
        typeof iss.input === 'number'
          ? `must be a duration with a unit, e.g. "${iss.input}s" or "${iss.input}ms" (got ${iss.input})`
          : `must be ${wanted} (got ${got(iss)})`,
      ),
    })
    .transform((text, ctx): number => {
      const ms = parseDuration(text);
      if (ms === undefined) {
        ctx.addIssue({ code: 'custom', message: `must be ${wanted} (got ${shown(text)})`, input: text });
        return z.NEVER;
      }
      if (ms < min || ms > max) {
        ctx.addIssue({ code: 'custom', message: `must be between ${showMs(min)} and ${showMs(max)} (got ${text})`, input: text });
        return z.NEVER;
      }
      return ms;
    });
}

/** Milliseconds in the largest unit that divides them, for messages: 30000 -> "30s". */
export function showMs(ms: Millis): string {
  for (const unit of ['d', 'h', 'm', 's'] as const) if (ms > 0 && ms % UNIT_MS[unit] === 0) return `${ms / UNIT_MS[unit]}${unit}`;
  return `${ms}ms`;
}

/** A whole number in [min, max]; the message names the range, as SREs expect ("between 0 and 100"). */
export function wholeNumber(min: number, max: number = Number.MAX_SAFE_INTEGER): z.ZodNumber {
  const range = max === Number.MAX_SAFE_INTEGER ? `a whole number, at least ${min}` : `a whole number between ${min} and ${max}`;
  const error = unlessMissing((iss) => `must be ${range} (got ${got(iss)})`);
  return z.number({ error }).int({ error }).min(min, { error }).max(max, { error });
}

/** A number in [min, max], or in (min, max] when `exclusiveMin`. */
export function numberIn(min: number, max: number, opts: { exclusiveMin?: boolean } = {}): z.ZodNumber {
  const range = opts.exclusiveMin ? `greater than ${min} and at most ${max}` : `between ${min} and ${max}`;
  const error = unlessMissing((iss) => `must be ${range} (got ${got(iss)})`);
  const base = z.number({ error });
  return (opts.exclusiveMin ? base.gt(min, { error }) : base.min(min, { error })).max(max, { error });
}

/** A string matching `pattern`, with `what` saying in words what is allowed. */
export function patterned(pattern: RegExp, what: string, maxLength: number): z.ZodString {
  const error = unlessMissing((iss) => `must be ${what} (got ${got(iss)})`);
  return z
    .string({ error })
    .max(maxLength, { error: unlessMissing((iss) => `must be at most ${maxLength} characters (got ${got(iss)})`) })
    .regex(pattern, { error });
}

/** Model and Consumer names: they appear in URLs, headers and metric labels. */
export const resourceName = patterned(
  /^[a-z0-9][a-z0-9._-]*$/,
  "lowercase letters, digits, '.', '_' or '-', starting with a letter or digit",
  63,
);

/** Listener, JWT issuer and masking-rule names: they become Envoy resource names. */
export const shortName = patterned(/^[a-z0-9][a-z0-9-]*$/, "lowercase letters, digits or '-', starting with a letter or digit", 63);

/** Roles come from policy and from JWT claims, so they allow what identity providers commonly emit. */
export const roleName = patterned(/^[A-Za-z0-9][A-Za-z0-9._:/-]*$/, "letters, digits, '.', '_', ':', '/' or '-'", 128);

/** A TCP port. */
export const port = wholeNumber(1, 65535);

/** A listener address: Envoy binds listeners to IPs, never names. */
export const ipAddress = z.string().refine((s) => isIP(s) !== 0, { error: (iss) => `must be an IPv4 or IPv6 address (got ${got(iss)})` });

const HOSTNAME = /^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$/;

/** An address Envoy connects to: an IP or a DNS name. */
export const hostAddress = z
  .string()
  .refine((s) => isIP(s) !== 0 || HOSTNAME.test(s), { error: (iss) => `must be an IP address or a DNS name (got ${got(iss)})` });

/** A virtual-host domain as Envoy matches it: `*`, `api.example.com`, `*.example.com`, optionally `:port`. */
export const hostPattern = z
  .string()
  .transform((s) => s.toLowerCase())
  .pipe(
    patterned(
      /^(\*|(\*\.)?[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*)(:\d{1,5})?$/,
      "'*', a host name, or '*.' and a domain, optionally with ':port'",
      253,
    ),
  );

const SEGMENT = "[A-Za-z0-9._~!$&'()*+,;=:@-]+";

/**
 * A route path prefix. Matching is by whole path segments (the translator uses Envoy's path_separated_prefix),
 * so a trailing '/' would mean nothing and is refused rather than silently dropped.
 */
export const pathPrefix = patterned(
  new RegExp(`^/(${SEGMENT}(/${SEGMENT})*)?$`),
  "a path starting with '/', without a trailing '/', '//', '?', '#' or spaces (e.g. /models/fraud-detector)",
  1024,
);

/** An HTTP path for health checks. */
export const httpPath = patterned(/^\/[^\s?#]*(\?[^\s#]*)?$/, "a path starting with '/'", 1024);

/** An HTTP header name, lowercased (HTTP/2 and Envoy's matchers use lowercase names). */
export const headerName = z
  .string()
  .transform((s) => s.toLowerCase())
  .pipe(patterned(/^[a-z0-9!#$%&'*+.^_`|~-]+$/, 'an HTTP header name (letters, digits and -)', 256));

/** An MLflow alias, as MLflow validates it; `latest` and `v<N>` are reserved by MLflow for versions. */
export const aliasName = patterned(/^[A-Za-z0-9_-]+$/, "letters, digits, '_' or '-'", 255).superRefine((s, ctx) => {
  if (/^[vV]\d+$/.test(s)) ctx.addIssue({ code: 'custom', message: `'${s}' is a version, not an alias: write { version: ${s.slice(1)} }` });
  else if (s.toLowerCase() === 'latest') ctx.addIssue({ code: 'custom', message: "'latest' is reserved by MLflow and is never an alias" });
});

/** A model version number; written as a YAML number or a string of digits, kept as MLflow's decimal string. */
export const versionNumber = z
  .union([z.number(), z.string()], { error: (iss) => `must be a version number like 3 (got ${got(iss)})` })
  .transform((v, ctx): string => {
    const text = String(v);
    if (!/^[1-9]\d{0,17}$/.test(text)) {
      ctx.addIssue({ code: 'custom', message: `must be a version number like 3 (got ${shown(v)})`, input: v });
      return z.NEVER;
    }
    return text;
  });

/** Text of an RE2 error without the JS-style `Invalid regular expression: /…/u:` wrapper. */
function re2Reason(err: unknown): string {
  const text = err instanceof Error ? err.message : String(err);
  const m = /^Invalid regular expression: \/.*\/u: (.*)$/s.exec(text);
  return m?.[1] ?? text;
}

/** Why `source` is not a usable RE2 masking pattern, or undefined when it is one. */
export function re2Problem(source: string): string | undefined {
  let re: RE2;
  try {
    // re2-wasm only runs in unicode mode; the 'u' flag is required, not a choice.
    re = new (re2())(source, 'u');
  } catch (err) {
    return `does not compile under RE2: ${re2Reason(err)}`;
  }
  // A pattern that matches "" would "mask" the gap between every two characters.
  if (re.test('')) return 'matches the empty string; a masking pattern must match at least one character';
  return undefined;
}

/** An RE2 regular expression, checked by compiling it with the same engine the filter service uses. */
export const re2Pattern = z
  .string()
  .min(1)
  .max(1024)
  .superRefine((s, ctx) => {
    const problem = re2Problem(s);
    if (problem !== undefined) ctx.addIssue({ code: 'custom', message: problem });
  });

/** An http(s) URL. */
export const httpUrl = z.string().refine(
  (s) => {
    try {
      const u = new URL(s);
      return u.protocol === 'https:' || u.protocol === 'http:';
    } catch {
      return false;
    }
  },
  { error: (iss) => `must be an http(s) URL (got ${got(iss)})` },
);

/** `{name}`/`{version}` host:port template; checked by filling the placeholders and parsing the result. */
export const addressTemplate = z.string().superRefine((s, ctx) => {
  for (const m of s.matchAll(/\{([^}]*)\}/g)) {
    if (m[1] !== 'name' && m[1] !== 'version') {
      ctx.addIssue({ code: 'custom', message: `unknown placeholder {${m[1] ?? ''}} (known: {name}, {version})` });
      return;
    }
  }
  const filled = s.replaceAll('{name}', 'model').replaceAll('{version}', '1');
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(filled);
  const host = m?.[1] ?? m?.[2];
  const portNumber = Number(m?.[3]);
  const hostOk = host !== undefined && (isIP(host) !== 0 || HOSTNAME.test(host));
  if (!hostOk || !(portNumber >= 1 && portNumber <= 65535)) {
    ctx.addIssue({ code: 'custom', message: `must be host:port with optional {name} and {version} placeholders (got ${shown(s)})` });
  }
});
