import { createHash, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { IncomingMessage } from 'node:http';
import { FlowgateError } from '../errors.js';

/**
 * The admin token that guards every mutating admin endpoint (rollout commands, the console's buttons).
 * It comes from a file (--admin-token-file, a mounted secret) or FLOWGATE_ADMIN_TOKEN; without one, mutating
 * endpoints refuse every call, on loopback too: a local process is not an operator.
 */

/** Tokens shorter than this are refused at start: they can be guessed. */
export const MIN_TOKEN_LENGTH = 16;

export class AdminToken {
  private readonly digest: Buffer;

  constructor(token: string) {
    if (token.length < MIN_TOKEN_LENGTH) throw new FlowgateError('admin.weak_token', `the admin token must be at least ${MIN_TOKEN_LENGTH} characters`);
    this.digest = sha256(token);
  }

  /** True when `candidate` is the token (compared in constant time). */
  matches(candidate: string): boolean {
    return timingSafeEqual(sha256(candidate), this.digest);
  }
}

function sha256(text: string): Buffer {
  return createHash('sha256').update(text, 'utf8').digest();
}

/** The token from a file (trailing newline dropped) or from the environment; undefined when neither is given. */
export function loadAdminToken(file: string | undefined, env: NodeJS.ProcessEnv = process.env): AdminToken | undefined {
  if (file !== undefined && file !== '') {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      throw new FlowgateError('admin.token_unreadable', `cannot read the admin token file ${file}: ${(err as Error).message}`);
    }
    return new AdminToken(text.replace(/\r?\n$/, ''));
  }
  const fromEnv = env.FLOWGATE_ADMIN_TOKEN;
  return fromEnv !== undefined && fromEnv !== '' ? new AdminToken(fromEnv) : undefined;
}

export type AuthResult = { readonly ok: true } | { readonly ok: false; readonly status: 401 | 403; readonly error: string; readonly message: string };

/** Whether a request carries the admin token as `Authorization: Bearer <token>`. */
export function authorizeAdmin(token: AdminToken | undefined, req: IncomingMessage): AuthResult {
  if (!token) {
    return { ok: false, status: 403, error: 'admin_token_not_configured', message: 'this control plane has no admin token (--admin-token-file or FLOWGATE_ADMIN_TOKEN): mutating endpoints are off' };
  }
  const header = req.headers.authorization ?? '';
  const m = /^Bearer\s+(.+)$/i.exec(header);
  if (!m?.[1] || !token.matches(m[1].trim())) return { ok: false, status: 401, error: 'unauthorized', message: 'send the admin token as Authorization: Bearer <token>' };
  return { ok: true };
}
