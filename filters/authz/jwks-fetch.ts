import type { customFetch, RemoteJWKSetOptions } from 'jose';
import { JWKS_LIMITS } from '../../src/contract/filter-policy.js';

/**
 * The fetch jose uses for `jwksUri` key sets, with the contract's limits: the body is read as a stream and
 * dropped as soon as it passes JWKS_LIMITS.maxBytes (or when Content-Length already says it will), and a set
 * with more than JWKS_LIMITS.maxKeys keys is refused before jose imports any of them. A refused set is a fetch
 * failure to jose: the issuer's tokens are refused as `jwks_unavailable` until a good set is fetched.
 */

type JwksFetch = NonNullable<RemoteJWKSetOptions[typeof customFetch]>;

/** A key set that breaks JWKS_LIMITS; its message names the URL and the limit, never the content. */
export class JwksLimitError extends Error {
  override readonly name = 'JwksLimitError';
}

async function boundedText(url: string, res: Response, maxBytes: number): Promise<string> {
  const declared = Number(res.headers.get('content-length') ?? NaN);
  if (declared > maxBytes) {
    await res.body?.cancel().catch(() => undefined);
    throw new JwksLimitError(`the JWKS at ${url} is ${declared} bytes; at most ${maxBytes} are read`);
  }
  if (!res.body) return '';
  const chunks: Uint8Array[] = [];
  let size = 0;
  // Leaving the loop early cancels the stream, which drops the connection: the rest is never received.
  for await (const chunk of res.body as AsyncIterable<Uint8Array>) {
    size += chunk.byteLength;
    if (size > maxBytes) throw new JwksLimitError(`the JWKS at ${url} is larger than ${maxBytes} bytes; it is not read further`);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

/** jose's `customFetch` with the JWKS limits (global fetch underneath). */
export function limitedJwksFetch(limits: { readonly maxBytes: number; readonly maxKeys: number } = JWKS_LIMITS): JwksFetch {
  return async (url, options) => {
    const res = await fetch(url, options);
    // jose reports a non-200 answer itself; its body is not read.
    if (res.status !== 200) {
      await res.body?.cancel().catch(() => undefined);
      return res;
    }
    const text = await boundedText(url, res, limits.maxBytes);
    let keys: unknown;
    try {
      keys = (JSON.parse(text) as { keys?: unknown } | null)?.keys;
    } catch {
      // Not JSON: jose says so in its own words.
      return new Response(text, { status: 200, headers: { 'content-type': 'application/json' } });
    }
    if (Array.isArray(keys) && keys.length > limits.maxKeys) {
      throw new JwksLimitError(`the JWKS at ${url} has ${keys.length} keys; at most ${limits.maxKeys} are accepted`);
    }
    return new Response(text, { status: 200, headers: { 'content-type': 'application/json' } });
  };
}
