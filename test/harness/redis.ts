import { execFile } from 'node:child_process';
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

/** A throwaway Redis Cluster: masters with one replica each, all on loopback, no persistence. */
export interface TestRedisCluster {
  /** redis+cluster://127.0.0.1:P,… naming every node. */
  readonly url: string;
  readonly ports: readonly number[];
  /** The ports of the nodes that are masters now (after a failover, the promoted replicas among them). */
  masters(): Promise<number[]>;
  /** SIGKILL one node: a master's replica takes over after the node timeout. */
  kill(port: number): Promise<void>;
  /** Resolves once every live node reports cluster_state:ok and every slot has a live master. */
  healthy(timeoutMs?: number): Promise<void>;
  stop(): Promise<void>;
}

/** One command to one node with redis-cli, its output trimmed. */
export async function redisCli(port: number, args: readonly string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile('redis-cli', ['-h', '127.0.0.1', '-p', String(port), ...args], { timeout: 30_000 }, (err, stdout, stderr) => (err ? reject(new Error(`redis-cli ${args.join(' ')}: ${err.message}\n${stderr}`)) : resolve(stdout.trim())));
  });
}

/** Starts `masters` masters with one replica each (--cluster-node-timeout 1000) and waits until the cluster is ok. */
export async function startRedisCluster(masters = 3): Promise<TestRedisCluster> {
  const dir = mkdtempSync(join(tmpdir(), 'flowgate-redis-cluster-'));
  const ports: number[] = [];
  for (let i = 0; i < masters * 2; i++) ports.push(await freePort());
  const procs = new Map<number, ManagedProcess>();
  for (const port of ports) {
    const proc = startProcess(`redis-cluster-${port}`, 'redis-server', [
      '--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir,
      '--cluster-enabled', 'yes', '--cluster-config-file', `nodes-${port}.conf`, '--cluster-node-timeout', '1000',
      // A replica with no recent write from its master must still take over (the cluster is idle between tests).
      '--cluster-replica-validity-factor', '0',
    ]);
    procs.set(port, proc);
  }
  for (const port of ports) {
    await waitFor(`cluster node ${port} to answer PING`, async () => ((await ping(port)) ? true : undefined), { timeoutMs: 15_000, intervalMs: 50, describe: () => procs.get(port)?.tail() ?? '' });
  }
  await redisCli(ports[0] as number, ['--cluster', 'create', ...ports.map((p) => `127.0.0.1:${p}`), '--cluster-replicas', '1', '--cluster-yes']);
  const live = (): number[] => ports.filter((p) => procs.get(p)?.child.exitCode === null && procs.get(p)?.child.signalCode === null);
  const masterPorts = async (): Promise<number[]> => {
    const nodes = await redisCli(live()[0] as number, ['cluster', 'nodes']);
    return nodes
      .split('\n')
      .filter((line) => /\bmaster\b/.test(line) && !/\bfail\b/.test(line))
      .map((line) => Number(/:(\d+)@/.exec(line)?.[1]))
      .filter((p) => live().includes(p));
  };
  const healthy = async (timeoutMs = 30_000): Promise<void> => {
    await waitFor(
      'the Redis Cluster to be ok',
      async () => {
        for (const port of live()) {
          if (!(await redisCli(port, ['cluster', 'info'])).includes('cluster_state:ok')) return undefined;
        }
        return (await masterPorts()).length === masters ? true : undefined;
      },
      { timeoutMs, intervalMs: 200 },
    );
  };
  await healthy();
  return {
    url: `redis+cluster://${ports.map((p) => `127.0.0.1:${p}`).join(',')}`,
    ports,
    masters: masterPorts,
    kill: async (port) => {
      const proc = procs.get(port);
      if (!proc || proc.child.exitCode !== null || proc.child.signalCode !== null) return;
      proc.child.kill('SIGKILL');
      await proc.exited;
    },
    healthy,
    stop: async () => {
      for (const proc of procs.values()) await proc.stop();
    },
  };
}
