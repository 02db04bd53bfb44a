import type { FilterPolicy } from '../contract/filter-policy.js';
import { buildGatewayIR } from '../ir/build.js';
import type { GatewayIR } from '../ir/types.js';
import type { ReservedAddress } from '../ir/upstream-guard.js';
import { assertValidIR } from '../ir/validate.js';
import type { PolicyIssue } from '../policy/issues.js';
import type { Policy } from '../policy/policy.js';
import type { RegistrySnapshot } from '../registry/types.js';
import type { SignatureMap } from '../registry/signatures.js';
import { CONFIG_SOURCE_MODES, XDS_CLUSTER, type ConfigSourceMode } from '../resources/config-source.js';
import { ConsistencyTracker } from '../resources/consistency.js';
import type { ResourceInput } from '../resources/types.js';
import { translateGateway } from '../translate/index.js';
import { filterPolicyOf } from '../translate/filter-policy.js';
import { hasProxylessTargets, translateProxyless } from '../translate/proxyless.js';
import { PROXYLESS_VARIANT, type SnapshotVariant } from '../resources/variants.js';

/**
 * The one pipeline every command runs: (policy, registry, previous IR) -> IR -> resources per snapshot
 * variant, checked for consistency. `serve` publishes its output, `render` prints it, `validate` and the
 * golden tests check it; so what is reviewed is what is served, with the same versions. Pure: no I/O, and
 * the same inputs give the same output.
 */

export interface PipelineInput {
  readonly policy: Policy;
  /** Undefined before the first registry sync (or for `validate` without a registry): no model has versions. */
  readonly registry: RegistrySnapshot | undefined;
  /** The IR served before, so a registry mistake keeps the last live versions. */
  readonly previous?: GatewayIR | undefined;
  /**
   * The serving process's own listen addresses (xDS, admin, filter service), which no model version may use. The
   * IR knows only the policy; Flowgate's well-known ports are refused without this.
   */
  readonly reserved?: readonly ReservedAddress[] | undefined;
  /** Model-version signatures read from MLflow so far (validation and protocol conversion read them). */
  readonly signatures?: SignatureMap | undefined;
}

/** The resources of one snapshot: for a node group and a variant (an Envoy xDS mode, or proxyless gRPC clients). */
export interface GroupResources {
  readonly group: string;
  readonly variant: SnapshotVariant;
  readonly resources: readonly ResourceInput[];
}

export interface PipelineOutput {
  readonly ir: GatewayIR;
  /** Policy faults only the registry reveals; a policy edit with any is rejected. */
  readonly issues: readonly PolicyIssue[];
  readonly filterPolicy: FilterPolicy;
  readonly groups: readonly GroupResources[];
}

/** The group whose snapshots serve every node that has no group of its own. */
export const DEFAULT_GROUP = '*';

export interface PipelineOptions {
  /** The Envoy variants to build (default: every xDS mode). */
  readonly modes?: readonly ConfigSourceMode[];
  /** Build the proxyless variant: always (true), never (false), or when a model has a proxyless target (default). */
  readonly proxyless?: boolean;
}

/**
 * The consistency check of each variant, kept from run to run: a run whose resources are mostly the objects
 * of the run before (the translators' memos) checks only those that changed. Any run may follow any other
 * (the check compares the resources themselves), so one tracker per variant serves every caller.
 */
const trackers = new Map<SnapshotVariant, ConsistencyTracker>();

function trackerOf(variant: SnapshotVariant): ConsistencyTracker {
  let t = trackers.get(variant);
  if (!t) {
    t = new ConsistencyTracker();
    trackers.set(variant, t);
  }
  return t;
}

/**
 * Runs the pipeline. Throws when translation fails or a snapshot would be inconsistent
 * (InconsistentSnapshotError naming the dangling references): nothing of it may be published.
 */
export function runPipeline(input: PipelineInput, options: PipelineOptions = {}): PipelineOutput {
  const { ir, issues } = buildGatewayIR(input.policy, input.registry, input.previous, { reserved: input.reserved ?? [], signatures: input.signatures });
  assertValidIR(ir);
  const groups: GroupResources[] = (options.modes ?? CONFIG_SOURCE_MODES).map((variant) => ({
    group: DEFAULT_GROUP,
    variant,
    resources: trackerOf(variant).check(translateGateway(ir, variant), { staticClusters: [XDS_CLUSTER] }),
  }));
  // Proxyless clients have no static clusters: everything they are told to use must be in the snapshot.
  if (options.proxyless ?? hasProxylessTargets(ir)) groups.push({ group: DEFAULT_GROUP, variant: PROXYLESS_VARIANT, resources: trackerOf(PROXYLESS_VARIANT).check(translateProxyless(ir)) });
  return { ir, issues, filterPolicy: filterPolicyOf(ir), groups };
}
