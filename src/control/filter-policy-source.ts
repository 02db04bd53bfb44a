import { FILTER_POLICY_NAME } from '../contract/filter-policy.js';
import { errorMessage } from '../errors.js';
import { logger } from '../observability/log.js';
import { runPipeline } from '../pipeline/index.js';
import type { Policy } from '../policy/policy.js';
import { PolicyWatcher } from '../policy/watch.js';
import type { MlflowClientOptions } from '../registry/mlflow-client.js';
import { MlflowClient } from '../registry/mlflow-client.js';
import { RegistryPoller } from '../registry/poller.js';
import type { RegistrySnapshot } from '../registry/types.js';
import { TypeUrl } from '../resources/types.js';
import { filterPolicyResource } from '../translate/filter-policy.js';
import { Snapshot } from '../xds/snapshot.js';
import type { FilterPolicySource } from '../../filters/service/process.js';

/**
 * The filter policy of a local policy directory (and, when given, a registry), for `flowgate filters
 * --policy DIR`: the same pipeline the control plane runs, so a standalone filter service resolves aliases
 * and applies the same defaults, and its policy version is the one the control plane would serve.
 */

const log = logger('filters');

export interface LocalFilterPolicyOptions {
  readonly policyDir: string;
  /** A fixed registry (from --registry FILE) ... */
  readonly registry?: RegistrySnapshot | undefined;
  /** ... or an MLflow server to poll. */
  readonly mlflow?: MlflowClientOptions | undefined;
  readonly pollIntervalMs?: number;
}

export function localFilterPolicySource(options: LocalFilterPolicyOptions): FilterPolicySource {
  const watcher = new PolicyWatcher(options.policyDir);
  const poller = options.mlflow ? new RegistryPoller({ client: new MlflowClient(options.mlflow), intervalMs: options.pollIntervalMs ?? 5000 }) : undefined;
  let policy: Policy | undefined;
  let registry = options.registry;
  return {
    description: `policy ${options.policyDir}${options.mlflow ? ` + mlflow ${options.mlflow.trackingUri}` : options.registry ? ' + registry file' : ''}`,
    async start(onPolicy) {
      const publish = (): void => {
        if (!policy || (poller && !registry)) return;
        try {
          const { filterPolicy } = runPipeline({ policy, registry }, { modes: ['ads'] });
          const version = Snapshot.from([filterPolicyResource(filterPolicy)]).get(TypeUrl.FilterPolicy, FILTER_POLICY_NAME)?.version ?? policy.hash.slice(0, 16);
          onPolicy(filterPolicy, version);
        } catch (err) {
          log.error({ err: errorMessage(err) }, 'the filter policy could not be built; the previous one keeps deciding');
        }
      };
      watcher.on('policy', (p) => {
        policy = p;
        publish();
      });
      poller?.on('snapshot', (s) => {
        registry = s;
        publish();
      });
      await watcher.start();
      if (poller) void poller.start();
    },
    async stop() {
      await watcher.stop();
      await poller?.stop();
    },
  };
}
