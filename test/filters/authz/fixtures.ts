import { createHash } from 'node:crypto';
import { expect } from 'vitest';
import type { AuthzAllow, AuthzDecision, AuthzDeny } from '../../../filters/authz/engine.js';
import type { ConsumerRules, JwtIssuerRules, ModelRules } from '../../../src/contract/filter-policy.js';
import { consumerRulesOf, jwtIssuers as issuers, modelRules } from '../rules-fixtures.js';

/** Rules for the authz tests: policy documents through the real schemas and the IR's defaults. */

export function sha256Hex(key: string): string {
  return createHash('sha256').update(key, 'utf8').digest('hex');
}

export function jwtIssuers(auth: unknown = {}): JwtIssuerRules[] {
  return issuers(auth);
}

/** A model's rules; `live` as version -> aliases (stable first), as the registry would make them live. */
export function model(name: string, extra: Record<string, unknown> = {}, live: Record<string, string[]> = {}): ModelRules {
  const versions = Object.entries(live);
  return modelRules(name, extra, versions.map(([version, aliases], i) => ({ version, aliases, weight: versions.length === 1 ? 100 : i === 0 ? 90 : 10 })));
}

export function consumer(name: string, extra: Record<string, unknown> = {}): ConsumerRules {
  return consumerRulesOf(name, extra);
}

export function expectAllow(d: AuthzDecision): AuthzAllow {
  if (!d.allow) throw new Error(`expected allow, got ${d.status} ${d.code}: ${d.message}`);
  return d;
}

export function expectDeny(d: AuthzDecision, status: AuthzDeny['status'], code: AuthzDeny['code']): AuthzDeny {
  if (d.allow) throw new Error(`expected deny ${status} ${code}, got allow (consumer ${d.consumer ?? 'none'})`);
  expect({ status: d.status, code: d.code }).toEqual({ status, code });
  expect(JSON.parse(d.body)).toMatchObject({ error: code, message: d.message });
  return d;
}
