import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { freePort } from './ports.js';
import { startProcess, waitFor, type ManagedProcess } from './process.js';
import { repoRoot } from './venv.js';

/**
 * `flowgate serve` as a child process, run from the TypeScript sources (so tests exercise the code under
 * review, not a stale build), on free loopback ports.
 */

export interface FlowgateProcess {
  readonly xdsPort: number;
  readonly adminUrl: string;
  readonly process: ManagedProcess;
  /** Prometheus text of /metrics. */
  metrics(): Promise<string>;
  /** The value of one sample (name with labels exactly as printed, e.g. `x{result="ok"}`), or undefined. */
  metric(sample: string): Promise<number | undefined>;
  /** The process log so far, as lines of parsed JSON (non-JSON lines skipped). */
  logLines(): Record<string, unknown>[];
  stop(): Promise<void>;
}

export const CLI_ENTRY = join(repoRoot, 'src', 'cli', 'main.ts');

/** Runs the CLI from source with the given arguments (for one-shot commands like validate). */
export function cliArgs(args: readonly string[]): [string, string[]] {
  return [process.execPath, ['--import', 'tsx', CLI_ENTRY, ...args]];
}

export interface CliRun {
  readonly status: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/**
 * Runs the CLI from source and resolves when it exits. Not spawnSync: a test that blocks its event loop
 * while a command waits on a control plane also stops what the test process serves (model upstreams,
 * traffic), and the command may wait on exactly that.
 */
export function runCli(args: readonly string[], options: { env?: NodeJS.ProcessEnv } = {}): Promise<CliRun> {
  const [cmd, argv] = cliArgs(args);
  const child = spawn(cmd, argv, { cwd: repoRoot, env: options.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c));
  child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    // 'close' comes after both streams are drained, so nothing printed is missing.
    child.on('close', (status) => resolve({ status, stdout, stderr }));
  });
}

export async function startFlowgate(options: {
  policyDir: string;
  mlflowUri?: string;
  registryFile?: string;
  pollIntervalMs?: number;
  xdsPort?: number;
  /** Run the embedded filter service on this port; absent: --no-filters. */
  filtersPort?: number;
  /** Run the pipeline service beside the embedded filter service on this port. */
  pipelinesPort?: number;
  redisUrl?: string;
  extraArgs?: readonly string[];
  env?: Record<string, string>;
  name?: string;
}): Promise<FlowgateProcess> {
  const xdsPort = options.xdsPort ?? (await freePort());
  const adminPort = await freePort();
  const args = [
    'serve',
    '--policy',
    options.policyDir,
    ...(options.mlflowUri ? ['--mlflow-uri', options.mlflowUri] : []),
    ...(options.registryFile ? ['--registry', options.registryFile] : []),
    '--poll-interval',
    String(options.pollIntervalMs ?? 1000),
    '--xds-listen',
    `127.0.0.1:${xdsPort}`,
    '--admin-listen',
    `127.0.0.1:${adminPort}`,
    ...(options.filtersPort ? ['--filters-listen', `127.0.0.1:${options.filtersPort}`] : ['--no-filters']),
    ...(options.redisUrl ? ['--redis-url', options.redisUrl] : []),
    ...(options.pipelinesPort ? ['--pipelines-listen', `127.0.0.1:${options.pipelinesPort}`] : []),
    ...(options.extraArgs ?? []),
  ];
  const [cmd, argv] = cliArgs(args);
  const proc = startProcess(options.name ?? 'flowgate-serve', cmd, argv, {
    cwd: repoRoot,
    env: { ...process.env, FLOWGATE_LOG_LEVEL: 'debug', ...(options.env ?? {}) },
  });
  const adminUrl = `http://127.0.0.1:${adminPort}`;
  try {
    await waitFor(
      'flowgate serve /readyz',
      async () => {
        if (proc.child.exitCode !== null) throw new Error(`flowgate serve exited with ${proc.child.exitCode}`);
        const res = await fetch(`${adminUrl}/readyz`);
        return res.status === 200 ? true : undefined;
      },
      { timeoutMs: 60_000, describe: () => proc.tail(40) },
    );
  } catch (err) {
    // A control plane that never got ready (a rejected policy) must not outlive the test that started it.
    await proc.stop();
    throw err;
  }
  const metrics = async (): Promise<string> => (await fetch(`${adminUrl}/metrics`)).text();
  return {
    xdsPort,
    adminUrl,
    process: proc,
    metrics,
    metric: async (sample) => {
      for (const line of (await metrics()).split('\n')) {
        if (line.startsWith(`${sample} `)) return Number(line.slice(sample.length + 1));
      }
      return undefined;
    },
    logLines: () => {
      const out: Record<string, unknown>[] = [];
      for (const line of proc.tail(100_000).split('\n')) {
        if (!line.startsWith('{')) continue;
        try {
          out.push(JSON.parse(line) as Record<string, unknown>);
        } catch {
          // a line cut by a concurrent write; the next read sees it whole
        }
      }
      return out;
    },
    stop: () => proc.stop(),
  };
}
