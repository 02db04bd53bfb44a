import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { appendFileSync, closeSync, createWriteStream, existsSync, mkdirSync, openSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';

/**
 * Child processes started by tests: output to a log file, killed when the test ends or the worker exits,
 * and their log attached to any error about them.
 */

const running = new Set<ChildProcess>();
process.on('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});

/** Where the suite's logs go (one directory per test run, scanned by the secret-leak test). */
export function logDir(): string {
  const dir = process.env.FLOWGATE_TEST_LOG_DIR ?? join(tmpdir(), 'flowgate-test-logs');
  mkdirSync(dir, { recursive: true });
  return dir;
}

export interface ManagedProcess {
  readonly name: string;
  readonly child: ChildProcess;
  readonly logFile: string;
  /** The last lines of the process's log. */
  tail(lines?: number): string;
  /** SIGTERM, then SIGKILL after graceMs; resolves when the process has exited. */
  stop(graceMs?: number): Promise<void>;
  /** Resolves with the exit code when the process ends. */
  readonly exited: Promise<number | null>;
}

let counter = 0;

export interface StartOptions extends SpawnOptions {
  /**
   * 'file' (the default): the process writes its log file itself. 'pipe': its output comes through this
   * process (child.stdout is readable) and is copied to the log file, for a test that reads what it prints.
   */
  readonly output?: 'file' | 'pipe';
}

/** Starts a process with stdout and stderr going to its own log file under logDir(). */
export function startProcess(name: string, command: string, args: string[], options: StartOptions = {}): ManagedProcess {
  const logFile = join(logDir(), `${name}-${process.pid}-${++counter}.log`);
  const { output = 'file', ...spawnOptions } = options;
  let child: ChildProcess;
  if (output === 'file') {
    // Not through a pipe to this process: a full pipe stops the writer until this process reads it, so a
    // test that blocks its event loop (spawnSync, a long synchronous step) would freeze MLflow, Envoy or
    // flowgate in the middle of the test, waiting for their own log line to be taken.
    const fd = openSync(logFile, 'a');
    try {
      child = spawn(command, args, { ...spawnOptions, stdio: ['ignore', fd, fd] });
    } finally {
      closeSync(fd);
    }
  } else {
    const out = createWriteStream(logFile);
    child = spawn(command, args, { ...spawnOptions, stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout?.pipe(out, { end: false });
    child.stderr?.pipe(out, { end: false });
  }
  running.add(child);
  const exited = new Promise<number | null>((resolve) => {
    child.on('exit', (code) => {
      running.delete(child);
      resolve(code);
    });
    child.on('error', (err) => {
      appendFileSync(logFile, `spawn error: ${err.message}\n`);
      running.delete(child);
      resolve(null);
    });
  });
  const tail = (lines = 40): string => {
    if (!existsSync(logFile)) return '';
    return readFileSync(logFile, 'utf8').split('\n').slice(-lines).join('\n');
  };
  const stop = async (graceMs = 5000): Promise<void> => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
    await exited;
    clearTimeout(timer);
  };
  return { name, child, logFile, tail, stop, exited };
}

/**
 * Polls `probe` until it returns a value (not undefined) or the deadline passes; fails with `describe()`
 * (typically the component's log tail) when it does not come.
 */
export async function waitFor<T>(
  what: string,
  probe: () => Promise<T | undefined> | T | undefined,
  options: { timeoutMs?: number; intervalMs?: number; describe?: () => string } = {},
): Promise<T> {
  const deadline = Date.now() + (options.timeoutMs ?? 30_000);
  let lastError: unknown;
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined) return value;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() > deadline) {
      const detail = options.describe ? `\n--- log ---\n${options.describe()}` : '';
      const cause = lastError instanceof Error ? ` (last error: ${lastError.message})` : '';
      throw new Error(`timed out waiting for ${what}${cause}${detail}`);
    }
    await new Promise((r) => setTimeout(r, options.intervalMs ?? 100));
  }
}
