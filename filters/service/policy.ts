import { z } from 'zod';
import type { GatewayIR } from '../../src/ir/types.js';
import { canonicalJson, type Policy } from '../../src/policy/policy.js';
import type { ConsumerPolicy, GatewayPolicy, ModelPolicy } from '../../src/policy/schema.js';
import { TypeUrl } from '../../src/resources/types.js';
import type { ResourceInput } from '../../src/xds/snapshot.js';

/**
 * The filter policy: what the filter service needs of the policy (consumers, access rules, limits, quotas,
 * masking) plus the live aliases of each model from the registry (for alias and version access rules). The
 * control plane serves it as one xDS resource (`flowgate.v1.FilterPolicy`, name `flowgate`) in the same
 * snapshot as the Envoy resources, so one edit reaches Envoys and filter services with one version.
 */

export const FILTER_POLICY_SCHEMA = 1;
export const FILTER_POLICY_NAME = 'flowgate';

export interface FilterPolicy {
  readonly gateway: GatewayPolicy;
  readonly models: readonly ModelPolicy[];
  readonly consumers: readonly ConsumerPolicy[];
  /** Per model: alias -> version, for the aliases on live versions. */
  readonly aliases: Readonly<Record<string, Readonly<Record<string, string>>>>;
}

/** The filter policy of a policy and the IR built from it. */
export function filterPolicyOf(policy: Policy, ir: GatewayIR | undefined): FilterPolicy {
  const aliases: Record<string, Record<string, string>> = {};
  for (const m of ir?.models ?? []) aliases[m.name] = { ...m.pinnableAliases };
  return { gateway: policy.gateway, models: [...policy.models.values()], consumers: [...policy.consumers.values()], aliases };
}

/** The xDS resource carrying a filter policy. */
export function filterPolicyResource(fp: FilterPolicy): ResourceInput {
  return { typeUrl: TypeUrl.FilterPolicy, name: FILTER_POLICY_NAME, message: { schema_version: FILTER_POLICY_SCHEMA, policy_json: canonicalJson(fp) } };
}

const named = z.looseObject({ name: z.string() });
const wire = z.object({
  gateway: z.looseObject({ kind: z.literal('Gateway'), filterService: z.looseObject({ failOpen: z.boolean() }), auth: z.looseObject({ jwt: z.array(z.unknown()) }) }),
  models: z.array(named.extend({ kind: z.literal('Model'), registeredModel: z.string() })),
  consumers: z.array(named.extend({ kind: z.literal('Consumer'), apiKeys: z.array(z.unknown()) })),
  aliases: z.record(z.string(), z.record(z.string(), z.string())),
});

/**
 * Reads a filter policy received over xDS: the schema output of a control plane running this same code, so
 * only its envelope is checked here. Throws with the reason on anything else (the caller NACKs it).
 */
export function parseFilterPolicy(schemaVersion: number, json: string): FilterPolicy {
  if (schemaVersion !== FILTER_POLICY_SCHEMA) throw new Error(`filter policy schema ${schemaVersion} is not supported (this filter service reads ${FILTER_POLICY_SCHEMA})`);
  const parsed = wire.safeParse(JSON.parse(json));
  if (!parsed.success) throw new Error(`filter policy is malformed: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
  return parsed.data as unknown as FilterPolicy;
}
