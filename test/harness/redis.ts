import { execFile } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
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
  // The cluster bus defaults to port + 10000, which lands in the kernel's ephemeral range: give it a port of ours.
  const busPorts = new Map<number, number>();
  for (const port of ports) busPorts.set(port, await freePort());
  const procs = new Map<number, ManagedProcess>();
  for (const port of ports) {
    const proc = startProcess(`redis-cluster-${port}`, 'redis-server', [
      '--port', String(port), '--cluster-port', String(busPorts.get(port)), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir,
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

/** A throwaway Sentinel deployment: one master, one replica and three Sentinels watching them, on loopback. */
export interface TestRedisSentinel {
  /** redis+sentinel://127.0.0.1:S1,S2,S3/MASTER */
  readonly url: string;
  readonly masterName: string;
  /** The data nodes' ports (the first is the master at start). */
  readonly ports: readonly number[];
  /** The port the Sentinels name as master now. */
  master(): Promise<number>;
  /** SIGKILL one data node. */
  kill(port: number): Promise<void>;
  /** Resolves once the replica has every write the master has acknowledged so far. */
  replicated(timeoutMs?: number): Promise<void>;
  stop(): Promise<void>;
}

/**
 * Starts a master, a replica of it and three Sentinels (quorum 2, down after 1 s) and waits until every
 * Sentinel knows the replica. A killed master is replaced by its replica after about two seconds.
 */
export async function startRedisSentinel(masterName = 'flowgate'): Promise<TestRedisSentinel> {
  const dir = mkdtempSync(join(tmpdir(), 'flowgate-redis-sentinel-'));
  const [masterPort, replicaPort] = [await freePort(), await freePort()];
  const ports = [masterPort, replicaPort];
  const data = new Map<number, ManagedProcess>();
  const base = ['--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir];
  data.set(masterPort, startProcess(`redis-master-${masterPort}`, 'redis-server', ['--port', String(masterPort), ...base]));
  data.set(replicaPort, startProcess(`redis-replica-${replicaPort}`, 'redis-server', ['--port', String(replicaPort), ...base, '--replicaof', '127.0.0.1', String(masterPort)]));
  for (const port of ports) await waitFor(`redis ${port} to answer PING`, async () => ((await ping(port)) ? true : undefined), { timeoutMs: 15_000, intervalMs: 50 });
  const sentinels: { port: number; proc: ManagedProcess }[] = [];
  for (let i = 0; i < 3; i++) {
    const port = await freePort();
    // A Sentinel rewrites its configuration file as it learns the topology: one writable file each.
    const file = join(dir, `sentinel-${port}.conf`);
    writeFileSync(
      file,
      [`port ${port}`, 'bind 127.0.0.1', `dir ${dir}`, `sentinel monitor ${masterName} 127.0.0.1 ${masterPort} 2`, `sentinel down-after-milliseconds ${masterName} 1000`, `sentinel failover-timeout ${masterName} 5000`, `sentinel parallel-syncs ${masterName} 1`, ''].join('\n'),
    );
    sentinels.push({ port, proc: startProcess(`redis-sentinel-${port}`, 'redis-server', [file, '--sentinel']) });
  }
  const ask = (port: number, args: string[]): Promise<string> => redisCli(port, args);
  await waitFor(
    'every Sentinel to know the master and its replica',
    async () => {
      for (const s of sentinels) {
        const replicas = await ask(s.port, ['sentinel', 'replicas', masterName]).catch(() => '');
        if (!replicas.includes(String(replicaPort))) return undefined;
        const known = await ask(s.port, ['sentinel', 'sentinels', masterName]).catch(() => '');
        if ((known.match(/^name$/gm) ?? []).length < 2) return undefined;
      }
      return true;
    },
    { timeoutMs: 30_000, intervalMs: 200, describe: () => sentinels.map((s) => s.proc.tail(10)).join('\n') },
  );
  const alive = (proc: ManagedProcess | undefined): boolean => proc !== undefined && proc.child.exitCode === null && proc.child.signalCode === null;
  return {
    url: `redis+sentinel://${sentinels.map((s) => `127.0.0.1:${s.port}`).join(',')}/${masterName}`,
    masterName,
    ports,
    master: async () => {
      for (const s of sentinels) {
        const answer = await ask(s.port, ['sentinel', 'get-master-addr-by-name', masterName]).catch(() => '');
        const port = Number(answer.split('\n')[1]);
        if (port > 0) return port;
      }
      throw new Error('no Sentinel names a master');
    },
    kill: async (port) => {
      const proc = data.get(port);
      if (!alive(proc)) return;
      proc?.child.kill('SIGKILL');
      await proc?.exited;
    },
    replicated: async (timeoutMs = 10_000) => {
      const offset = async (port: number, field: string): Promise<number> => Number(new RegExp(`${field}:(\\d+)`).exec(await ask(port, ['info', 'replication']))?.[1] ?? -1);
      await waitFor(
        'the replica to have every write',
        async () => {
          const target = await offset(masterPort, 'master_repl_offset');
          return target > 0 && (await offset(replicaPort, 'slave_repl_offset')) >= target ? true : undefined;
        },
        { timeoutMs, intervalMs: 50 },
      );
    },
    stop: async () => {
      for (const s of sentinels) await s.proc.stop();
      for (const proc of data.values()) if (alive(proc)) await proc.stop();
    },
  };
}
