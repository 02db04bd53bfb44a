import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startEnvoy, type EnvoyOptions, type EnvoyProcess } from './envoy.js';
import { startFlowgate, type FlowgateProcess } from './flowgate.js';
import { freePorts } from './ports.js';
import { waitFor } from './process.js';
import { request, type HttpAnswer } from './traffic.js';

/**
 * A whole gateway for a test: `flowgate serve` (with its embedded filter service) fed by a policy directory and
 * a registry file written from the test's text, and one real Envoy bootstrapped against it. The policy is a
 * function of the ports picked, so it can name the listener and filter-service ports it must use.
 */

export interface GatewayPorts {
  readonly listener: number;
  readonly filters: number;
  readonly xds: number;
  /** The Envoy's admin port (on loopback). */
  readonly envoyAdmin: number;
}

export interface TestGateway {
  readonly dir: string;
  readonly policyDir: string;
  readonly ports: GatewayPorts;
  readonly flowgate: FlowgateProcess;
  readonly envoy: EnvoyProcess;
  /** A request to the public listener. */
  send(path: string, init?: RequestInit): Promise<HttpAnswer>;
  /** Rewrites the registry file (the control plane watches it). */
  writeRegistry(registry: unknown): void;
  /** Rewrites one policy file and waits until the control plane serves a policy with a new hash. */
  editPolicy(file: string, text: string): Promise<void>;
  stop(): Promise<void>;
}

export interface GatewayOptions {
  readonly name: string;
  /** Policy files (name -> YAML) for the ports picked. */
  readonly policy: (ports: GatewayPorts) => Record<string, string>;
  /** The registry file's content (see src/registry/file.ts). */
  readonly registry: (ports: GatewayPorts) => unknown;
  readonly serveArgs?: readonly string[];
  readonly envoy?: Partial<EnvoyOptions>;
}

const policyHash = async (flowgate: FlowgateProcess): Promise<string | null> =>
  ((await (await fetch(`${flowgate.adminUrl}/debug/policy`)).json()) as { hash: string | null }).hash;

/** Starts the control plane and an Envoy; the first route answering is left to the test to wait for. */
export async function startGateway(options: GatewayOptions): Promise<TestGateway> {
  const [listener, filters, xds, envoyAdmin] = (await freePorts(4)) as [number, number, number, number];
  const ports = { listener, filters, xds, envoyAdmin };
  const dir = mkdtempSync(join(tmpdir(), `flowgate-${options.name}-`));
  const policyDir = join(dir, 'policy');
  mkdirSync(policyDir);
  for (const [file, text] of Object.entries(options.policy(ports))) writeFileSync(join(policyDir, file), text);
  writeFileSync(join(dir, 'registry.json'), JSON.stringify(options.registry(ports)));
  const flowgate = await startFlowgate({
    policyDir,
    registryFile: join(dir, 'registry.json'),
    filtersPort: filters,
    xdsPort: xds,
    name: `flowgate-${options.name}`,
    ...(options.serveArgs && { extraArgs: options.serveArgs }),
  });
  let envoy: EnvoyProcess;
  try {
    envoy = await startEnvoy({ nodeId: `envoy-${options.name}`, nodeCluster: 'security', xdsHost: '127.0.0.1', xdsPort: xds, adminPort: envoyAdmin, ...options.envoy });
  } catch (err) {
    await flowgate.stop();
    throw err;
  }
  return {
    dir,
    policyDir,
    ports,
    flowgate,
    envoy,
    writeRegistry: (registry) => writeFileSync(join(dir, 'registry.json'), JSON.stringify(registry)),
    send: (path, init = {}) => request(`http://127.0.0.1:${listener}${path}`, init),
    editPolicy: async (file, text) => {
      const before = await policyHash(flowgate);
      writeFileSync(join(policyDir, file), text);
      await waitFor(`the edit of ${file} to be applied`, async () => ((await policyHash(flowgate)) !== before ? true : undefined), {
        describe: () => flowgate.process.tail(20),
      });
    },
    stop: async () => {
      await envoy.stop();
      await flowgate.stop();
    },
  };
}
