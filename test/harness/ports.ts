import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';

/**
 * Ports for components a test starts. They come from below the kernel's ephemeral range: a port the OS hands
 * out for "port 0" is also the kind it gives outgoing connections as their source port, so a port taken from
 * there can be grabbed by any client socket (an Envoy's own xDS connection) before the component binds it.
 * Each vitest worker draws from its own slice, and a port is handed out once per process.
 */

const handedOut = new Set<number>();

/** [low, high) below the ephemeral range, split between workers. */
function slice(): [number, number] {
  let ephemeralLow = 32768;
  try {
    ephemeralLow = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]) || ephemeralLow;
  } catch {
    // not Linux: keep the usual default
  }
  const low = 20000;
  const high = Math.max(low + 4000, Math.min(ephemeralLow, 32768));
  const slices = 4;
  const worker = Number(process.env.VITEST_POOL_ID ?? process.env.VITEST_WORKER_ID ?? 1);
  const size = Math.floor((high - low) / slices);
  const start = low + ((Math.max(worker, 1) - 1) % slices) * size;
  return [start, start + size];
}

const [LOW, HIGH] = slice();

function bindable(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.unref();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

/** A TCP port on 127.0.0.1 that was free a moment ago; the caller binds it next. */
export async function freePort(): Promise<number> {
  for (let attempt = 0; attempt < 1000; attempt++) {
    const port = LOW + Math.floor(Math.random() * (HIGH - LOW));
    if (handedOut.has(port) || !(await bindable(port))) continue;
    handedOut.add(port);
    return port;
  }
  throw new Error(`no free port in ${LOW}-${HIGH}`);
}

/** Several distinct free ports. */
export async function freePorts(n: number): Promise<number[]> {
  const ports: number[] = [];
  while (ports.length < n) ports.push(await freePort());
  return ports;
}
