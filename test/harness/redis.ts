import { connect } from 'node:net';
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
