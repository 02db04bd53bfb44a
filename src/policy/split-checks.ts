import { CREDENTIAL_HEADERS } from '../contract/filter-wire.js';
import type { ValidDocument } from './checks.js';
import type { PolicyIssue } from './issues.js';
import type { GatewayPolicy } from './schema/index.js';

/**
 * What Gateway.traffic.split: endpoints cannot serve (src/translate/eds-split.ts): a sticky Model whose
 * sticky header is a credential. Envoy's balancer hashes the caller's header itself there, and every route
 * removes the credential headers before the balancer reads them, so the split would not stick.
 */
export function checkSplit(docs: readonly ValidDocument[], gateway: GatewayPolicy): PolicyIssue[] {
  if (gateway.traffic?.split !== 'endpoints') return [];
  const credentials: readonly string[] = CREDENTIAL_HEADERS;
  const issues: PolicyIssue[] = [];
  for (const d of docs) {
    if (d.kind !== 'Model') continue;
    const header = d.policy.traffic?.sticky?.header;
    if (header === undefined || !credentials.includes(header.toLowerCase())) continue;
    issues.push(
      d.source.issue(
        ['traffic', 'sticky', 'header'],
        `Gateway.traffic.split: endpoints makes Envoy hash the sticky header, and Envoy removes '${header}' (a credential) before it hashes: stick on another header (e.g. x-user-id), or use traffic.split: routes`,
        'conflict',
      ),
    );
  }
  return issues;
}
