import { createHash } from 'node:crypto';
import { expect } from 'vitest';
import type { AuthzAllow, AuthzDecision, AuthzDeny } from '../../../filters/authz/engine.js';
import { ConsumerSchema, GatewaySchema, ModelSchema } from '../../../src/policy/schema.js';
import type { ConsumerPolicy, GatewayPolicy, ModelPolicy } from '../../../src/policy/schema.js';

/** Policy documents for the authz tests, parsed through the real schemas so every default is filled. */

export function sha256Hex(key: string): string {
  return createHash('sha256').update(key, 'utf8').digest('hex');
}

export function gateway(auth: unknown = {}): GatewayPolicy {
  return GatewaySchema.parse({ kind: 'Gateway', auth });
}

export function model(name: string, extra: Record<string, unknown> = {}): ModelPolicy {
  return ModelSchema.parse({
    kind: 'Model',
    name,
    upstream: { addressTemplate: '127.0.0.1:5001' },
    traffic: { stable: { alias: 'champion' } },
    ...extra,
  });
}

export function consumer(name: string, extra: Record<string, unknown> = {}): ConsumerPolicy {
  return ConsumerSchema.parse({ kind: 'Consumer', name, ...extra });
}

export function expectAllow(d: AuthzDecision): AuthzAllow {
  if (!d.allow) throw new Error(`expected allow, got ${d.status} ${d.code}: ${d.message}`);
  return d;
}

export function expectDeny(d: AuthzDecision, status: 401 | 403, code: AuthzDeny['code']): AuthzDeny {
  if (d.allow) throw new Error(`expected deny ${status} ${code}, got allow (consumer ${d.consumer ?? 'none'})`);
  expect({ status: d.status, code: d.code }).toEqual({ status, code });
  expect(JSON.parse(d.body)).toEqual({ error: code, message: d.message });
  return d;
}
