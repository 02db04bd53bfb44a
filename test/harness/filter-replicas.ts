import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startEnvoy, type EnvoyProcess } from './envoy.js';
import { cliArgs, startFlowgate, type FlowgateProcess } from './flowgate.js';
import { freePorts } from './ports.js';
import { startProcess, waitFor, type ManagedProcess } from './process.js';
import { repoRoot } from './venv.js';

/**
 * One gateway of a replicated deployment: a control plane (`flowgate serve --no-filters`) on its own policy
 * copy, a standalone `flowgate filters` replica fed by it over xDS with its counters in the shared Redis, and
 * an Envoy. Several of them on one Redis are the fleet whose shared limits a test proves.
 */
export interface ReplicatedGateway {
  readonly plane: FlowgateProcess;
  readonly replica: ManagedProcess;
  readonly envoy: EnvoyProcess;
  /** http://127.0.0.1:PORT of the gateway's listener. */
  readonly base: string;
  stop(): Promise<void>;
}

/** Starts gateway `index` of `name` in `dir` (policy from `files(listener, filtersPort)`), ready once the filter replica is. */
export async function startReplicatedGateway(options: {
  readonly name: string;
  readonly index: number;
  readonly dir: string;
  readonly registryFile: string;
  readonly redisUrl: string;
  readonly files: (listener: number, filters: number) => Record<string, string>;
}): Promise<ReplicatedGateway> {
  const [listener, filters, admin] = (await freePorts(3)) as [number, number, number];
  const policyDir = join(options.dir, `policy-${options.index}`);
  mkdirSync(policyDir, { recursive: true });
  for (const [file, text] of Object.entries(options.files(listener, filters))) writeFileSync(join(policyDir, file), text);
  const plane = await startFlowgate({ policyDir, registryFile: options.registryFile, name: `${options.name}-cp${options.index}` });
  const [cmd, args] = cliArgs(['filters', '--xds', `127.0.0.1:${plane.xdsPort}`, '--listen', `127.0.0.1:${filters}`, '--admin-listen', `127.0.0.1:${admin}`, '--redis-url', options.redisUrl]);
  const replica = startProcess(`${options.name}-filters-${options.index}`, cmd, args, { cwd: repoRoot });
  await waitFor(`filter replica ${options.index} ready`, async () => ((await fetch(`http://127.0.0.1:${admin}/readyz`).catch(() => undefined))?.status === 200 ? true : undefined), {
    timeoutMs: 30_000,
    describe: () => replica.tail(20),
  });
  const envoy = await startEnvoy({ nodeId: `e2e-${options.name}-${options.index}`, nodeCluster: 'e2e', xdsHost: '127.0.0.1', xdsPort: plane.xdsPort });
  return {
    plane,
    replica,
    envoy,
    base: `http://127.0.0.1:${listener}`,
    stop: async () => {
      await envoy.stop();
      await replica.stop();
      await plane.stop();
    },
  };
}
