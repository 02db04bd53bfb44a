import { execFileSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './ports.js';
import { startProcess, waitFor, type ManagedProcess } from './process.js';

/** A throwaway redis-server for a test file: no persistence, on a free port, restartable on the same port. */
export interface TestRedis {
  readonly port: number;
  readonly url: string;
  /** SIGTERM and wait for exit. */
  stop(): Promise<void>;
  /** SIGKILL and wait for exit: an outage as clients see it. */
  kill(): Promise<void>;
  /** Starts it again (stopping it first if it runs) on the same port, empty, and waits until it answers PING. */
  restart(): Promise<void>;
}

/** Starts redis-server on a free port and resolves once it answers PING. */
export async function startRedis(): Promise<TestRedis> {
  const port = await freePort();
  let proc = await launch(port);
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    stop: () => proc.stop(),
    kill: async () => {
      if (proc.child.exitCode !== null || proc.child.signalCode !== null) return;
      proc.child.kill('SIGKILL');
      await proc.exited;
    },
    restart: async () => {
      await proc.stop();
      proc = await launch(port);
    },
  };
}

async function launch(port: number): Promise<ManagedProcess> {
  const proc = startProcess('redis', 'redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no']);
  await waitFor('redis-server to answer PING', async () => ((await ping(port)) ? true : undefined), {
    timeoutMs: 15_000,
    intervalMs: 50,
    describe: () => proc.tail(),
  });
  return proc;
}

/** Whether a Redis on 127.0.0.1:port answers PING with PONG (a raw socket, so no client library state lingers). */
export function ping(port: number, timeoutMs = 500): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port });
    let reply = '';
    const done = (ok: boolean): void => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.on('error', () => done(false));
    socket.on('connect', () => socket.write('PING\r\n'));
    socket.on('data', (chunk) => {
      reply += chunk.toString('utf8');
      if (reply.includes('\r\n')) done(reply.startsWith('+PONG'));
    });
  });
}

/** A throwaway Redis Cluster: N masters (no replicas), each its own redis-server with cluster mode on. */
export interface TestRedisCluster {
  /** host:port of every master. */
  readonly nodes: readonly { readonly host: string; readonly port: number }[];
  stop(): Promise<void>;
}

/** Starts `masters` cluster-enabled redis-servers, joins them with `redis-cli --cluster create`, waits for cluster_state:ok. */
export async function startRedisCluster(masters = 3): Promise<TestRedisCluster> {
  const dir = mkdtempSync(join(tmpdir(), 'flowgate-redis-cluster-'));
  const procs: ManagedProcess[] = [];
  const nodes: { host: string; port: number }[] = [];
  for (let i = 0; i < masters; i++) {
    const port = await freePort();
    const proc = startProcess(`redis-cluster-${i}`, 'redis-server', [
      '--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no',
      '--cluster-enabled', 'yes', '--cluster-config-file', join(dir, `nodes-${port}.conf`), '--cluster-node-timeout', '2000',
    ]);
    procs.push(proc);
    nodes.push({ host: '127.0.0.1', port });
    await waitFor('a cluster node to answer PING', async () => ((await ping(port)) ? true : undefined), { timeoutMs: 15_000, intervalMs: 50, describe: () => proc.tail() });
  }
  execFileSync('redis-cli', ['--cluster', 'create', ...nodes.map((n) => `${n.host}:${n.port}`), '--cluster-replicas', '0', '--cluster-yes'], { stdio: 'pipe' });
  await waitFor('cluster_state:ok on every node', () => (nodes.every((n) => /cluster_state:ok/.test(execFileSync('redis-cli', ['-p', String(n.port), 'cluster', 'info'], { encoding: 'utf8' }))) ? true : undefined), {
    timeoutMs: 20_000,
    intervalMs: 100,
  });
  return {
    nodes,
    stop: async () => {
      for (const p of procs) await p.stop();
    },
  };
}
