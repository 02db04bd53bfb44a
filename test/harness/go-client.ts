import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, renameSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { startProcess, waitFor, type ManagedProcess } from './process.js';
import { repoRoot } from './venv.js';

/**
 * The grpc-go proxyless client (test/proxyless/go): built with the Go toolchain once per source hash into
 * ${FLOWGATE_CACHE_DIR:-~/.cache/flowgate}/go/, started as a child process, its JSON events read from stdout.
 */

const SOURCE_DIR = join(repoRoot, 'test/proxyless/go');

/** The Go toolchain: `go` on PATH, else where the official tarball installs it. */
function goBinary(): string {
  for (const candidate of ['go', '/usr/local/go/bin/go']) {
    try {
      execFileSync(candidate, ['version'], { stdio: 'ignore' });
      return candidate;
    } catch {
      // try the next one
    }
  }
  throw new Error('the Go toolchain is missing: install Go (1.26 or newer) to run the grpc-go proxyless tests');
}

/** Hash of what the binary is made of: every source file of the module and the toolchain version. */
function sourceHash(go: string): string {
  const hash = createHash('sha256');
  hash.update(execFileSync(go, ['env', 'GOVERSION'], { encoding: 'utf8' }));
  for (const file of readdirSync(SOURCE_DIR).filter((f) => /\.go$|^go\.(mod|sum)$/.test(f)).sort()) {
    hash.update(`\0${file}\0`).update(readFileSync(join(SOURCE_DIR, file)));
  }
  return hash.digest('hex').slice(0, 16);
}

/**
 * Builds the client unless a binary for the same sources is cached; resolves with the binary's path.
 * go.sum must list every module (-mod=readonly), so a build never edits the checkout.
 */
export async function buildProxylessGoClient(): Promise<string> {
  const go = goBinary();
  const dir = join(process.env.FLOWGATE_CACHE_DIR ?? join(homedir(), '.cache', 'flowgate'), 'go', `proxyless-client-${sourceHash(go)}`);
  const binary = join(dir, 'proxyless-client');
  if (existsSync(binary)) return binary;
  mkdirSync(dir, { recursive: true });
  // Built under a private name and renamed, so two test workers building at once never run a half-written file.
  const partial = `${binary}.${process.pid}.partial`;
  const build = startProcess('go-build-proxyless-client', go, ['build', '-mod=readonly', '-trimpath', '-o', partial, '.'], {
    cwd: SOURCE_DIR,
    env: { ...process.env, CGO_ENABLED: '0' },
  });
  const code = await build.exited;
  if (code !== 0) throw new Error(`go build of the proxyless client failed (exit ${code}):\n${build.tail()}`);
  renameSync(partial, binary);
  return binary;
}

/** What identifies a proxyless client to the xDS server (the node's cluster picks its snapshot group). */
export interface XdsNodeIdentity {
  readonly id: string;
  readonly cluster: string;
  readonly metadata?: Record<string, string>;
}

/** Writes a gRPC xDS bootstrap (grpc-go and grpc-js read the same format) for a plaintext xDS server; returns its path. */
export function writeXdsBootstrap(dir: string, xdsServer: string, node: XdsNodeIdentity): string {
  const bootstrap = {
    xds_servers: [{ server_uri: xdsServer, channel_creds: [{ type: 'insecure' }], server_features: ['xds_v3'] }],
    node: { id: node.id, cluster: node.cluster, metadata: node.metadata ?? {}, locality: {} },
  };
  mkdirSync(dir, { recursive: true });
  const path = join(dir, `bootstrap-${node.id}.json`);
  writeFileSync(path, JSON.stringify(bootstrap, null, 2));
  return path;
}

/** One round of calls as the client reports it. */
export interface GoClientRound {
  readonly event: 'round';
  readonly round: number;
  readonly calls: number;
  /** Answers per backend name (ServerMetadataResponse.name). */
  readonly counts: Record<string, number>;
  readonly versions: Record<string, number>;
  /** Failed calls per gRPC status code name. */
  readonly errors: Record<string, number>;
  readonly errorSamples: string[];
  /** Times the channel left READY since it was first READY (cumulative over rounds). */
  readonly readyLeft: number;
}

export type GoClientEvent =
  | { readonly event: 'config'; readonly clusters: string[] }
  | { readonly event: 'ready' }
  | GoClientRound
  | { readonly event: 'done'; readonly readyLeft: number; readonly states: string[] }
  | { readonly event: 'fatal'; readonly error: string };

export interface ProxylessGoClientOptions {
  readonly bootstrap: string;
  readonly target: string;
  readonly calls: number;
  readonly concurrency?: number;
  /** With more than one round, `waitFile` gates every round after the first. */
  readonly rounds?: number;
  readonly waitFile?: string;
}

export interface ProxylessGoClient {
  readonly process: ManagedProcess;
  /** Every event so far, in order. */
  readonly events: readonly GoClientEvent[];
  /** Resolves with the first event (past or future) that `match` accepts; fails on a fatal event or exit. */
  waitForEvent<E extends GoClientEvent>(what: string, match: (e: GoClientEvent) => e is E, timeoutMs?: number): Promise<E>;
  /** Resolves with the report of the given round. */
  round(n: number, timeoutMs?: number): Promise<GoClientRound>;
}

/** Starts the grpc-go client; it runs its rounds and exits by itself (stop it through `process`). */
export function startProxylessGoClient(binary: string, options: ProxylessGoClientOptions): ProxylessGoClient {
  const args = ['-bootstrap', options.bootstrap, '-target', options.target, '-calls', String(options.calls)];
  args.push('-concurrency', String(options.concurrency ?? 4), '-rounds', String(options.rounds ?? 1));
  if (options.waitFile) args.push('-wait-file', options.waitFile);
  // A bootstrap this process set for its own grpc-js-xds channels must not reach the child: grpc-go takes the
  // variable first, and the client's re-exec with -bootstrap would then never see its own file and loop.
  const { GRPC_XDS_BOOTSTRAP: _file, GRPC_XDS_BOOTSTRAP_CONFIG: _config, ...inherited } = process.env;
  const proc = startProcess('proxyless-go-client', binary, args, { env: { ...inherited, GRPC_GO_LOG_SEVERITY_LEVEL: 'warning' }, output: 'pipe' });
  const events: GoClientEvent[] = [];
  let buffered = '';
  proc.child.stdout?.setEncoding('utf8');
  proc.child.stdout?.on('data', (chunk: string) => {
    buffered += chunk;
    const lines = buffered.split('\n');
    buffered = lines.pop() ?? '';
    for (const line of lines) if (line.trim()) events.push(JSON.parse(line) as GoClientEvent);
  });
  // 'close' (not 'exit') comes after stdout is drained, so no event is still unread once it fires.
  let exited = false;
  proc.child.on('close', () => (exited = true));

  const waitForEvent = async <E extends GoClientEvent>(what: string, match: (e: GoClientEvent) => e is E, timeoutMs = 60_000): Promise<E> => {
    // A fatal event or an exit ends the wait at once: the event can no longer come.
    const outcome = await waitFor<{ event: E } | { failure: string }>(
      `the grpc-go client to report ${what}`,
      () => {
        const found = events.find(match);
        if (found) return { event: found };
        const fatal = events.find((e) => e.event === 'fatal');
        if (fatal) return { failure: `failed: ${fatal.error}` };
        if (exited) return { failure: 'exited' };
        return undefined;
      },
      { timeoutMs, intervalMs: 25, describe: () => proc.tail() },
    );
    if ('failure' in outcome) throw new Error(`grpc-go client ${outcome.failure} before ${what}\n--- log ---\n${proc.tail()}`);
    return outcome.event;
  };

  return {
    process: proc,
    events,
    waitForEvent,
    round: (n, timeoutMs) => waitForEvent(`round ${n}`, (e): e is GoClientRound => e.event === 'round' && e.round === n, timeoutMs),
  };
}
