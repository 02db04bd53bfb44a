import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { createWriteStream, readFileSync, writeFileSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { availableParallelism, cpus, loadavg, totalmem } from 'node:os';
import { join } from 'node:path';
import { createInterface, type Interface } from 'node:readline';

/**
 * The processes a side-by-side run starts, and what /proc says about them: RSS, peak RSS, CPU time.
 * Every process is stopped by its own handle; a run that fails still stops what it started.
 */

const started = new Set<ChildProcess>();
process.on('exit', () => {
  for (const child of started) child.kill('SIGKILL');
});

export interface Proc {
  readonly name: string;
  readonly child: ChildProcess;
  readonly pid: number;
  readonly logFile: string;
  /** Lines of stdout, when it was kept as a pipe. */
  readonly lines: Interface | undefined;
  tail(lines?: number): string;
  /** SIGTERM, then SIGKILL after graceMs. */
  stop(graceMs?: number): Promise<void>;
  readonly exited: Promise<number | null>;
}

/**
 * Starts a process logging to `dir/name.log`; with `pipeStdout` its stdout is read line by line instead
 * (and stdin is a pipe), for the JSON-lines protocol of ads-load and xds-peer.
 */
export function startProc(dir: string, name: string, command: string, args: readonly string[], options: SpawnOptions & { pipeStdout?: boolean } = {}): Proc {
  const logFile = join(dir, `${name}.log`);
  const log = createWriteStream(logFile, { flags: 'a' });
  const child = spawn(command, args, { ...options, stdio: [options.pipeStdout ? 'pipe' : 'ignore', 'pipe', 'pipe'] });
  started.add(child);
  if (!options.pipeStdout) child.stdout?.pipe(log, { end: false });
  child.stderr?.pipe(log, { end: false });
  const lines = options.pipeStdout && child.stdout ? createInterface({ input: child.stdout }) : undefined;
  const exited = new Promise<number | null>((resolve) => {
    child.on('exit', (code) => {
      started.delete(child);
      resolve(code);
    });
    child.on('error', (err) => {
      log.write(`spawn error: ${err.message}\n`);
      started.delete(child);
      resolve(null);
    });
  });
  if (child.pid === undefined) throw new Error(`${name}: could not start ${command}`);
  return {
    name,
    child,
    pid: child.pid,
    logFile,
    lines,
    tail: (n = 30) => {
      try {
        return readFileSync(logFile, 'utf8').split('\n').slice(-n).join('\n');
      } catch {
        return '';
      }
    },
    stop: async (graceMs = 5_000) => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      await exited;
      clearTimeout(timer);
    },
    exited,
  };
}

/** The next stdout line of `proc` that parses as JSON and satisfies `accept`, or an error naming its log. */
export function nextJson<T>(proc: Proc, accept: (value: Record<string, unknown>) => boolean, timeoutMs: number): Promise<T> {
  const lines = proc.lines;
  if (!lines) throw new Error(`${proc.name}: stdout is not piped`);
  return new Promise<T>((resolve, reject) => {
    const done = (err: Error | undefined, value?: T): void => {
      clearTimeout(timer);
      lines.off('line', onLine);
      if (err) reject(err);
      else resolve(value as T);
    };
    const onLine = (line: string): void => {
      let value: unknown;
      try {
        value = JSON.parse(line);
      } catch {
        return;
      }
      if (typeof value === 'object' && value !== null && accept(value as Record<string, unknown>)) done(undefined, value as T);
    };
    const timer = setTimeout(() => done(new Error(`${proc.name}: no answer within ${timeoutMs} ms\n--- ${proc.logFile} ---\n${proc.tail()}`)), timeoutMs);
    lines.on('line', onLine);
    void proc.exited.then((code) => done(new Error(`${proc.name} exited (${code}) before answering\n--- ${proc.logFile} ---\n${proc.tail()}`)));
  });
}

/** Polls `probe` until it gives a value; fails with `describe()` (a log tail) at the deadline. */
export async function waitFor<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs: number, describe: () => string = () => ''): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe().catch(() => undefined);
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}\n${describe()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** A TCP port on 127.0.0.1 that was free a moment ago. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

/** Resolves true when something accepts TCP connections on 127.0.0.1:port. */
export function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port });
    socket.setTimeout(500, () => {
      socket.destroy();
      resolve(false);
    });
    socket.on('error', () => resolve(false));
    socket.on('connect', () => {
      socket.destroy();
      resolve(true);
    });
  });
}

// ---------------------------------------------------------------- /proc

/** Resident set size of `pid` in MB (VmRSS). */
export function rssMb(pid: number): number {
  return statusKb(pid, 'VmRSS') / 1024;
}

/** Peak RSS of `pid` in MB since start or the last resetPeakRss (VmHWM). */
export function peakRssMb(pid: number): number {
  return statusKb(pid, 'VmHWM') / 1024;
}

/** Resets the kernel's peak-RSS mark of `pid` (clear_refs 5); false where the kernel refuses. */
export function resetPeakRss(pid: number): boolean {
  try {
    writeFileSync(`/proc/${pid}/clear_refs`, '5');
    return true;
  } catch {
    return false;
  }
}

/** User + system CPU seconds `pid` has used. */
export function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command (which may hold spaces) start after the last ')'.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const ticks = Number(fields[11]) + Number(fields[12]);
  return ticks / CLOCK_TICKS;
}

/** `pid` and every process below it (a server's worker processes), from /proc/PID/task/PID/children. */
export function processTree(pid: number): number[] {
  const out = [pid];
  for (let i = 0; i < out.length; i++) {
    const p = out[i] as number;
    try {
      const children = readFileSync(`/proc/${p}/task/${p}/children`, 'utf8').trim();
      if (children !== '') out.push(...children.split(/\s+/).map(Number));
    } catch {
      // gone
    }
  }
  return out;
}

/** `read` summed over `pid` and its descendants alive now (a process that ended meanwhile counts 0). */
function sumOverTree(pid: number, read: (pid: number) => number): number {
  return processTree(pid).reduce((sum, p) => {
    try {
      return sum + read(p);
    } catch {
      return sum;
    }
  }, 0);
}

/** User + system CPU seconds of `pid` and its descendants. */
export const treeCpuSeconds = (pid: number): number => sumOverTree(pid, cpuSeconds);

/** VmRSS of `pid` and its descendants, in MB. */
export const treeRssMb = (pid: number): number => sumOverTree(pid, rssMb);

// Linux's USER_HZ is 100 on every architecture Node runs on.
const CLOCK_TICKS = 100;

function statusKb(pid: number, field: string): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const match = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status);
  return match ? Number(match[1]) : 0;
}

/** Samples RSS of `pid` every `everyMs` until stopped; resolves with the highest value seen (MB). */
export function sampleRss(pid: number, everyMs = 20, tree = false): { stop(): number } {
  let peak = 0;
  const timer = setInterval(() => {
    try {
      peak = Math.max(peak, tree ? treeRssMb(pid) : rssMb(pid));
    } catch {
      // the process ended; keep what was seen
    }
  }, everyMs);
  return {
    stop: () => {
      clearInterval(timer);
      return peak;
    },
  };
}

/** The machine line every report starts with; the load average says how much else was running. */
export function machine(): string {
  const model = cpus()[0]?.model ?? 'unknown CPU';
  const load = loadavg().map((l) => l.toFixed(2)).join(' ');
  return `nproc ${availableParallelism()}, ${model.trim()}, ${Math.round(totalmem() / 2 ** 30)} GiB, node ${process.version}, load average ${load} at start`;
}
