import { looksLikeJwt } from './jwt.js';

/**
 * Reading the credential a request presents: `authorization: Bearer <JWT or API key>` or `x-api-key: <key>`.
 * Only the form is judged here; whether the credential is valid is the engine's question.
 */

/** The request headers that carry credentials; Envoy strips them before the request goes upstream. */
export const CREDENTIAL_HEADERS = ['authorization', 'x-api-key'] as const;

/** What the request presents. `via` says whether it came as a bearer token (which shapes the 401's challenge). */
export type PresentedCredential =
  | { readonly kind: 'none' }
  | { readonly kind: 'api_key'; readonly key: string; readonly via: 'bearer' | 'x-api-key' }
  | { readonly kind: 'jwt'; readonly token: string }
  | { readonly kind: 'unusable'; readonly reason: 'conflicting_credentials' | 'malformed_authorization'; readonly detail: string };

const BEARER = /^Bearer[ \t]+([^\s]+)$/i;

function present(value: string | undefined): string | undefined {
  return value === undefined || value.trim() === '' ? undefined : value;
}

/** The credential in the (lower-cased) headers; two credentials that disagree are unusable, not a choice. */
export function presentedCredential(headers: Readonly<Record<string, string>>): PresentedCredential {
  const authorization = present(headers.authorization);
  const apiKey = present(headers['x-api-key']);
  let bearer: string | undefined;
  if (authorization !== undefined) {
    bearer = BEARER.exec(authorization.trim())?.[1];
    if (bearer === undefined) {
      return { kind: 'unusable', reason: 'malformed_authorization', detail: 'the authorization header must be "Bearer <token or API key>"' };
    }
  }
  // Both headers are the caller's own values, so comparing them leaks nothing; only which one to trust is unclear.
  if (bearer !== undefined && apiKey !== undefined && bearer !== apiKey) {
    return { kind: 'unusable', reason: 'conflicting_credentials', detail: 'the authorization and x-api-key headers carry different credentials; send one' };
  }
  if (bearer !== undefined) return looksLikeJwt(bearer) ? { kind: 'jwt', token: bearer } : { kind: 'api_key', key: bearer, via: 'bearer' };
  if (apiKey !== undefined) return { kind: 'api_key', key: apiKey, via: 'x-api-key' };
  return { kind: 'none' };
}
