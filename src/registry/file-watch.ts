import { EventEmitter } from 'node:events';
import { watch, type FSWatcher } from 'node:fs';
import { stat } from 'node:fs/promises';
import { basename, dirname } from 'node:path';
import { errorMessage } from '../errors.js';
import { logger } from '../observability/log.js';
import { loadRegistryFile } from './file.js';
import type { RegistrySnapshot } from './types.js';

/**
 * A registry file (`serve --registry FILE`) watched like the policy directory: its directory's events and a
 * periodic stat check. A changed file that reads cleanly becomes the new snapshot; one that does not is
 * logged with its line and column, and the last good snapshot stays.
 */

const log = logger('registry');

export interface RegistryFileWatcherEvents {
  snapshot: [RegistrySnapshot];
  /** A changed file could not be read; the last good snapshot stays. */
  rejected: [string];
}

export class RegistryFileWatcher extends EventEmitter<RegistryFileWatcherEvents> {
  private fsWatcher: FSWatcher | undefined;
  private timer: NodeJS.Timeout | undefined;
  private debounce: NodeJS.Timeout | undefined;
  private fingerprint = '';
  private last: RegistrySnapshot | undefined;
  private reading: Promise<void> = Promise.resolve();

  constructor(
    readonly file: string,
    private readonly options: { readonly rescanMs?: number; readonly debounceMs?: number } = {},
  ) {
    super();
  }

  /** The last good snapshot, if any. */
  get current(): RegistrySnapshot | undefined {
    return this.last;
  }

  /** Reads the file (throws if the first read fails: there is nothing to serve) and starts watching it. */
  async start(): Promise<RegistrySnapshot> {
    this.fingerprint = await this.stamp();
    this.last = await loadRegistryFile(this.file);
    try {
      // The directory, not the file: an editor's rename replaces the file and would end a watch on it.
      this.fsWatcher = watch(dirname(this.file), { persistent: false }, (_event, name) => {
        if (name === null || name === basename(this.file)) this.changed();
      });
      this.fsWatcher.on('error', () => undefined);
    } catch (err) {
      log.warn({ file: this.file, err: errorMessage(err) }, 'cannot watch the registry file; relying on rescans');
    }
    this.timer = setInterval(() => this.changed(), this.options.rescanMs ?? 5_000);
    this.timer.unref();
    return this.last;
  }

  stop(): void {
    this.fsWatcher?.close();
    clearInterval(this.timer);
    clearTimeout(this.debounce);
  }

  private changed(): void {
    clearTimeout(this.debounce);
    this.debounce = setTimeout(() => {
      this.reading = this.reading.then(() => this.reload());
    }, this.options.debounceMs ?? 100);
    this.debounce.unref();
  }

  private async stamp(): Promise<string> {
    const s = await stat(this.file).catch(() => undefined);
    return s ? `${s.ino}:${s.size}:${s.mtimeMs}` : 'gone';
  }

  private async reload(): Promise<void> {
    const stamp = await this.stamp();
    if (stamp === this.fingerprint) return;
    this.fingerprint = stamp;
    try {
      const next = await loadRegistryFile(this.file);
      if (next.hash === this.last?.hash) return;
      this.last = next;
      log.info({ file: this.file, models: next.models.size }, 'registry file changed');
      this.emit('snapshot', next);
    } catch (err) {
      log.error({ file: this.file, err: errorMessage(err) }, 'the registry file is not valid; the last good snapshot keeps serving');
      this.emit('rejected', errorMessage(err));
    }
  }
}
