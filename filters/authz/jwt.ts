import { createLocalJWKSet, createRemoteJWKSet, customFetch, decodeJwt, decodeProtectedHeader, errors, jwtVerify } from 'jose';
import type { JWTPayload, JWTVerifyGetKey, RemoteJWKSetOptions } from 'jose';
import { errorMessage } from '../../src/errors.js';
import { logger } from '../../src/observability/log.js';
import { limitedJwksFetch } from './jwks-fetch.js';
import type { ConsumerRules, JwtIssuerRules as JwtIssuer } from '../../src/contract/filter-policy.js';

/**
 * JWT verification for the issuers of Gateway.auth.jwt, and the mapping of a verified token to the Consumer
 * whose `jwt` block names that issuer and the token's subject. Nothing here ever logs or returns the token.
 */

const log = logger('authz.jwt');

/** Why a token was not accepted; bounded, so it can label a metric. */
export type JwtFailure =
  /** Not a decodable JWT at all. */
  | 'malformed'
  /** Its `iss` names none of the configured issuers. */
  | 'unknown_issuer'
  /** Bad signature, algorithm outside the allow-list, wrong audience, not yet valid, no matching key. */
  | 'invalid'
  /** Signature fine, but `exp` is in the past by more than the issuer's clock skew. */
  | 'expired'
  /** Valid token whose subject claim names no Consumer of that issuer. */
  | 'unknown_subject'
  /** The issuer's key set could not be fetched or read: nothing could be verified. */
  | 'keys_unavailable';

/** The result of verifying one token: the Consumer it identifies with its roles, or why it was refused. */
export type JwtOutcome =
  | { readonly ok: true; readonly issuer: string; readonly consumer: string; readonly roles: readonly string[] }
  | { readonly ok: false; readonly failure: JwtFailure; readonly issuer?: string; readonly detail: string };

/** Tuning of the remote key sets (jose's cache and cooldown); jose's defaults when absent. */
export type RemoteKeySetOptions = Pick<RemoteJWKSetOptions, 'timeoutDuration' | 'cooldownDuration' | 'cacheMaxAge'>;

type JwtConsumer = Pick<ConsumerRules, 'name' | 'roles' | 'jwt'>;

interface IssuerVerifier {
  readonly config: JwtIssuer;
  readonly keys: JWTVerifyGetKey;
  /** Present for a jwksUri issuer, to fetch ahead of the first token. */
  readonly reload?: () => Promise<void>;
}

const KEY_SET_WARNING_INTERVAL_MS = 60_000;
const lastKeySetWarning = new Map<string, number>();

const BASE64URL_SEGMENT = /^[A-Za-z0-9_-]+$/;

/** True when the value has the form of a signed JWT: three base64url segments whose first is a JSON header. */
export function looksLikeJwt(value: string): boolean {
  const parts = value.split('.');
  if (parts.length !== 3 || !parts.every((p) => BASE64URL_SEGMENT.test(p))) return false;
  try {
    decodeProtectedHeader(value);
    return true;
  } catch {
    // Three dotted segments that are not a JOSE header: an API key that happens to contain dots.
    return false;
  }
}

function keySetOf(config: JwtIssuer, remote: RemoteKeySetOptions): Pick<IssuerVerifier, 'keys' | 'reload'> {
  if (config.jwks !== undefined) return { keys: createLocalJWKSet(config.jwks) };
  if (config.jwksUri === undefined) throw new Error(`JWT issuer '${config.name}' has neither jwks nor jwksUri`);
  const set = createRemoteJWKSet(new URL(config.jwksUri), { ...remote, [customFetch]: limitedJwksFetch() });
  return { keys: set, reload: () => set.reload() };
}

/** The token's failure as one of the bounded reasons, with a message a person can act on (no token content). */
function classify(err: unknown, config: JwtIssuer): { failure: JwtFailure; detail: string } {
  const who = `issuer '${config.name}'`;
  if (err instanceof errors.JWTExpired) return { failure: 'expired', detail: `the token has expired (${who} allows ${config.clockSkewMs / 1000}s of clock skew)` };
  if (err instanceof errors.JWTClaimValidationFailed && err.claim === 'exp' && err.reason === 'missing') {
    return { failure: 'invalid', detail: `the token has no "exp" claim, and ${who} requires one` };
  }
  if (err instanceof errors.JWTClaimValidationFailed) return { failure: 'invalid', detail: `the token's "${err.claim}" claim is not accepted by ${who}` };
  if (err instanceof errors.JOSEAlgNotAllowed) return { failure: 'invalid', detail: `the token's algorithm is not allowed by ${who} (allowed: ${config.algorithms.join(', ')})` };
  if (err instanceof errors.JWSSignatureVerificationFailed) return { failure: 'invalid', detail: `the token's signature does not verify with the keys of ${who}` };
  if (err instanceof errors.JWKSNoMatchingKey || err instanceof errors.JWKSMultipleMatchingKeys) {
    return { failure: 'invalid', detail: `no single key of ${who} matches the token's header` };
  }
  if (err instanceof errors.JWSInvalid || err instanceof errors.JWTInvalid || err instanceof errors.JOSENotSupported) {
    return { failure: 'invalid', detail: `the token is not a valid signed JWT for ${who}` };
  }
  // Anything else is about the key set (fetch failed, timed out, bad JSON, a key that does not import),
  // not about the caller's token: tell the operator, once a minute per issuer rather than once per request.
  const last = lastKeySetWarning.get(config.name) ?? -Infinity;
  if (Date.now() - last >= KEY_SET_WARNING_INTERVAL_MS) {
    lastKeySetWarning.set(config.name, Date.now());
    log.warn({ issuer: config.name, err: errorMessage(err) }, 'JWT key set unavailable; tokens of this issuer are refused');
  }
  return { failure: 'keys_unavailable', detail: `the keys of ${who} are unavailable; try again later` };
}

function stringClaim(payload: JWTPayload, claim: string): string | undefined {
  const value = payload[claim];
  return typeof value === 'string' ? value : undefined;
}

function rolesClaim(payload: JWTPayload, claim: string | undefined): string[] {
  if (claim === undefined) return [];
  const value = payload[claim];
  return Array.isArray(value) ? value.filter((r): r is string => typeof r === 'string') : [];
}

/** Verifies tokens against the configured issuers and names the Consumer each one identifies. */
export class JwtVerifier {
  /** Issuers by their `issuer` string (the token's `iss`); several may share one, tried in policy order. */
  private readonly byIss = new Map<string, IssuerVerifier[]>();
  /** Consumers by `${issuer name}\0${subject}`. */
  private readonly subjects = new Map<string, JwtConsumer>();

  /** Builds one key set per issuer; remote sets fetch lazily on the first token (or on prefetch()). */
  constructor(issuers: readonly JwtIssuer[], consumers: readonly JwtConsumer[], options: { remote?: RemoteKeySetOptions } = {}) {
    for (const config of issuers) {
      const verifier: IssuerVerifier = { config, ...keySetOf(config, options.remote ?? {}) };
      const same = this.byIss.get(config.issuer);
      if (same) same.push(verifier);
      else this.byIss.set(config.issuer, [verifier]);
    }
    for (const c of consumers) {
      if (c.jwt) this.subjects.set(`${c.jwt.issuer}\u0000${c.jwt.subject}`, c);
    }
  }

  /** Fetches every remote key set now; resolves to the names of the issuers whose fetch failed. */
  async prefetch(): Promise<string[]> {
    const failed: string[] = [];
    const all = [...this.byIss.values()].flat();
    await Promise.all(
      all.map(async (v) => {
        if (!v.reload) return;
        try {
          await v.reload();
        } catch (err) {
          log.warn({ issuer: v.config.name, err: errorMessage(err) }, 'JWT key set prefetch failed');
          failed.push(v.config.name);
        }
      }),
    );
    return failed;
  }

  /** Verifies the token with the issuer its `iss` names and maps it to a Consumer. */
  async verify(token: string): Promise<JwtOutcome> {
    let iss: string | undefined;
    try {
      iss = decodeJwt(token).iss;
    } catch {
      return { ok: false, failure: 'malformed', detail: 'the bearer token is not a decodable JWT' };
    }
    // `iss` is read before verification only to choose the key set; jwtVerify then checks it too.
    const candidates = iss === undefined ? undefined : this.byIss.get(iss);
    if (!candidates) return { ok: false, failure: 'unknown_issuer', detail: "the token's issuer is not one this gateway accepts" };
    let firstFailure: JwtOutcome | undefined;
    for (const candidate of candidates) {
      const outcome = await this.verifyWith(candidate, token);
      if (outcome.ok) return outcome;
      firstFailure ??= outcome;
    }
    return firstFailure as JwtOutcome;
  }

  private async verifyWith({ config, keys }: IssuerVerifier, token: string): Promise<JwtOutcome> {
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(token, keys, {
        issuer: config.issuer,
        ...(config.audiences.length > 0 && { audience: config.audiences }),
        algorithms: config.algorithms,
        clockTolerance: config.clockSkewMs / 1000,
        ...(config.requireExpiry && { requiredClaims: ['exp'] }),
      }));
    } catch (err) {
      return { ok: false, issuer: config.name, ...classify(err, config) };
    }
    const subject = stringClaim(payload, config.consumerClaim);
    const consumer = subject === undefined ? undefined : this.subjects.get(`${config.name}\u0000${subject}`);
    if (!consumer) {
      return { ok: false, failure: 'unknown_subject', issuer: config.name, detail: `the token's "${config.consumerClaim}" claim names no consumer of issuer '${config.name}'` };
    }
    const roles = [...consumer.roles];
    for (const role of rolesClaim(payload, config.rolesClaim)) if (!roles.includes(role)) roles.push(role);
    return { ok: true, issuer: config.name, consumer: consumer.name, roles };
  }
}
