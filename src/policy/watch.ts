import { EventEmitter } from 'node:events';
import { watch, type FSWatcher } from 'node:fs';
import { realpath } from 'node:fs/promises';
import { join } from 'node:path';
import { Counter, Gauge } from 'prom-client';
import { FlowgateError, errorMessage } from '../errors.js';
import { logger, type Logger } from '../observability/log.js';
import { metricsRegistry } from '../observability/metrics.js';
import { displayFile, formatIssue } from './format.js';
import type { PolicyIssue } from './issues.js';
import { policyDirectories, PolicyDirReader, policyPath, type PolicyDirRead } from './dir-reader.js';
import { policyFromRead } from './load.js';
import type { Policy } from './policy.js';

/**
 * PolicyWatcher keeps the last good Policy of a directory. Edits are seen through one non-recursive fs.watch
 * per directory of the tree: a directory watch reports in-place writes, files replaced by a rename (what
 * `sed -i` and most editors do) and Kubernetes ConfigMap `..data` swaps alike, and it survives them, where
 * Node 20's recursive watch stops reporting a file once it has been replaced by a rename. Any event re-arms
 * the watches (a new subdirectory gets one). An event names the entry that changed: a reload stats and reads
 * only the files the events named (PolicyDirReader keeps every other file's text), so an edit of one file
 * in a thousand costs one file's read and parse; an event it cannot judge alone (a directory, a symlink, no
 * name) makes it walk the whole tree. Because watches can still miss things (a directory replaced whole, an
 * NFS mount), a periodic rescan walks the tree and stats every file. Bursts of writes are debounced into one
 * reload. A rejected edit is logged issue by issue and changes nothing that serves.
 */

export type ReloadResult = 'applied' | 'rejected' | 'unchanged';

export interface ReloadOutcome {
  readonly result: ReloadResult;
  /** The policy serving after this reload (undefined until a first good load). */
  readonly policy: Policy | undefined;
  /** The issues of this load; empty unless rejected. */
  readonly issues: readonly PolicyIssue[];
}

export interface PolicyWatcherEvents {
  /** A policy with a new hash is now serving. */
  policy: [Policy];
  /** A load failed; the previous policy (if any) keeps serving. */
  rejected: [readonly PolicyIssue[]];
  /** Every completed reload, whatever its result. */
  reload: [ReloadOutcome];
}

export interface PolicyWatcherOptions {
  /**
   * How soon the first change after a quiet period is read: at once but for this short grace (a writer's
   * truncate and write land together). Default 10ms.
   */
  readonly leadingMs?: number;
  /**
   * The changes that follow the first one within this time (an editor or `kubectl cp` writing several files)
   * are coalesced into one more reload, this long after the last of them. Default 200ms.
   */
  readonly debounceMs?: number;
  /** Longest a steady stream of changes may postpone a reload. Default 2s. */
  readonly maxDelayMs?: number;
  /** Fingerprint rescan period, the safety net for missed events. Default 5s. */
  readonly rescanMs?: number;
  /**
   * A file that had content and is found empty is taken for a write in progress (truncated, not yet written)
   * for this long: its previous content keeps serving, and it is read again then. Default 1s.
   */
  readonly emptySettleMs?: number;
  /** Use fs.watch events; false relies on rescans alone (NFS and other mounts where inotify sees nothing). Default true. */
  readonly fsEvents?: boolean;
  /**
   * Checks a valid policy against what only the caller knows (e.g. the registry's model names) before it is
   * applied; any issue rejects the load like a schema error does.
   */
  readonly check?: (policy: Policy) => readonly PolicyIssue[];
  /**
   * Runs before `check` and is awaited: fetches what the check needs that the caller may not have yet (the
   * registered models a policy starts to name). A rejection is logged and the check runs anyway.
   */
  readonly prepare?: (policy: Policy) => Promise<void>;
  readonly log?: Logger;
}

const reloadsTotal = new Counter({
  name: 'flowgate_policy_reloads_total',
  help: 'Policy directory loads, by result: applied (new policy serving), rejected (issues; previous policy kept), unchanged (same hash).',
  labelNames: ['result'] as const,
  registers: [metricsRegistry],
});
for (const result of ['applied', 'rejected', 'unchanged'] as const) reloadsTotal.inc({ result }, 0);

const lastSuccess = new Gauge({
  name: 'flowgate_policy_last_reload_success_timestamp_seconds',
  help: 'Unix time of the last load that passed validation (applied or unchanged).',
  registers: [metricsRegistry],
});
const lastApplied = new Gauge({
  name: 'flowgate_policy_last_applied_timestamp_seconds',
  help: 'Unix time the serving policy was applied.',
  registers: [metricsRegistry],
});
// A number rather than a hash label: one series forever, yet replicas serving the same policy show the same value.
const hashPrefix = new Gauge({
  name: 'flowgate_policy_hash',
  help: 'The first 48 bits of the serving policy hash, as a number; equal on replicas serving the same policy.',
  registers: [metricsRegistry],
});
const issuesGauge = new Gauge({
  name: 'flowgate_policy_issues',
  help: 'Issues found by the most recent load: non-zero means the files on disk are rejected and the last good policy is serving.',
  registers: [metricsRegistry],
});
const rescansTotal = new Counter({
  name: 'flowgate_policy_rescans_total',
  help: 'Periodic rescans of the policy directory (the safety net for missed file-system events).',
  registers: [metricsRegistry],
});

const readyGauge = new Gauge({
  name: 'flowgate_policy_ready',
  help: '1 once a good policy has been loaded; 0 while none has (the first load failed).',
  registers: [metricsRegistry],
});

export class PolicyWatcher extends EventEmitter<PolicyWatcherEvents> {
  private readonly log: Logger;
  private readonly leadingMs: number;
  private readonly debounceMs: number;
  private readonly maxDelayMs: number;
  private lastChangeAt: number | undefined;
  private leadingPending = false;
  private readonly rescanMs: number;
  private readonly fsEvents: boolean;
  private readonly check: ((policy: Policy) => readonly PolicyIssue[]) | undefined;
  private readonly prepare: ((policy: Policy) => Promise<void>) | undefined;
  private serving: Policy | undefined;
  private issues: readonly PolicyIssue[] | undefined;
  private readonly reader: PolicyDirReader;
  /** Paths (relative to dir) named by events since the last reload started. */
  private changedPaths = new Set<string>();
  /** An event or a rescan asked for a walk of the whole tree. */
  private walkNeeded = true;
  private fsWatchers: FSWatcher[] = [];
  private watchedRealDir: string | undefined;
  /** The real paths of the directories watched, to re-arm when the tree's shape changes. */
  private watchedDirs = '';
  private rescanTimer: NodeJS.Timeout | undefined;
  private debounceTimer: NodeJS.Timeout | undefined;
  private settleTimer: NodeJS.Timeout | undefined;
  private burstStartedAt: number | undefined;
  private queued: Promise<ReloadOutcome | undefined> | undefined;
  private forceQueued = false;
  private tail: Promise<unknown> = Promise.resolve();
  private started = false;
  private stopped = false;
  private readyWaiters: { resolve: (p: Policy) => void; reject: (e: Error) => void }[] = [];

  /** `dir` as the user typed it: it prefixes every file in logs. */
  constructor(
    readonly dir: string,
    options: PolicyWatcherOptions = {},
  ) {
    super();
    this.log = options.log ?? logger('policy');
    this.leadingMs = options.leadingMs ?? 10;
    this.debounceMs = options.debounceMs ?? 200;
    this.maxDelayMs = options.maxDelayMs ?? 2_000;
    this.rescanMs = options.rescanMs ?? 5_000;
    this.fsEvents = options.fsEvents ?? true;
    this.check = options.check;
    this.prepare = options.prepare;
    this.reader = new PolicyDirReader(dir, options.emptySettleMs);
  }

  /** The policy serving now; undefined until a first load succeeds. */
  current(): Policy | undefined {
    return this.serving;
  }

  /** The issues of the most recent load if it was rejected; undefined once the files on disk load cleanly. */
  lastError(): readonly PolicyIssue[] | undefined {
    return this.issues;
  }

  /** Readiness: true once there is a good policy to serve. A failed first load leaves it false; nothing is invented. */
  ready(): boolean {
    return this.serving !== undefined;
  }

  /** Resolves with the first good policy (at once if there is one); rejects if the watcher stops before that. */
  whenReady(): Promise<Policy> {
    if (this.serving) return Promise.resolve(this.serving);
    if (this.stopped) return Promise.reject(new FlowgateError('policy.watcher_stopped', `the policy watcher of ${this.dir} stopped before a good policy was loaded`));
    return new Promise((resolve, reject) => this.readyWaiters.push({ resolve, reject }));
  }

  /** Loads the directory once, then watches it; resolves with the first load's outcome (which may be a rejection). */
  async start(): Promise<ReloadOutcome> {
    if (this.started) throw new FlowgateError('policy.watcher_started', `the policy watcher of ${this.dir} is already started`);
    this.started = true;
    // Arm first, so an edit made while the first load reads the files still triggers a reload after it.
    await this.arm();
    this.rescanTimer = setInterval(() => void this.rescan(), this.rescanMs);
    this.rescanTimer.unref();
    return this.reload();
  }

  /** Loads the whole directory now, even if no file changed (e.g. on SIGHUP). */
  async reload(): Promise<ReloadOutcome> {
    const outcome = await this.schedule(true);
    if (!outcome) throw new FlowgateError('policy.watcher_stopped', `the policy watcher of ${this.dir} is stopped`);
    return outcome;
  }

  /** Stops watching, waits for a reload in flight, and fails pending whenReady() calls; the last policy stays readable. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.debounceTimer);
    clearTimeout(this.settleTimer);
    clearInterval(this.rescanTimer);
    this.closeWatchers();
    await this.tail;
    const error = new FlowgateError('policy.watcher_stopped', `the policy watcher of ${this.dir} stopped before a good policy was loaded`);
    for (const w of this.readyWaiters.splice(0)) w.reject(error);
  }

  private closeWatchers(): void {
    for (const w of this.fsWatchers) w.close();
    this.fsWatchers = [];
    this.watchedDirs = '';
  }

  /** Watches every directory of the tree (non-recursively); does nothing when the tree's directories are unchanged. */
  private async arm(): Promise<void> {
    if (this.stopped || !this.fsEvents) return;
    let dirs: string[];
    try {
      this.watchedRealDir = await realpath(this.dir);
      dirs = await policyDirectories(this.dir);
    } catch (err) {
      this.closeWatchers();
      this.watchedRealDir = undefined;
      this.log.warn({ dir: this.dir, err: errorMessage(err) }, 'cannot watch the policy directory; relying on rescans');
      return;
    }
    const shape = dirs.join('\n');
    if (shape === this.watchedDirs && this.fsWatchers.length > 0) return;
    this.closeWatchers();
    for (const d of dirs) {
      try {
        const w = watch(d, { persistent: false }, (_event, name) => this.onEvent(d, name));
        w.on('error', (err) => {
          // The directory was removed or replaced; rescans keep watching for it and re-arm when it is back.
          this.log.warn({ dir: d, err: errorMessage(err) }, 'policy directory watch failed; relying on rescans');
          w.close();
          this.fsWatchers = this.fsWatchers.filter((x) => x !== w);
          this.watchedDirs = '';
          this.walkNeeded = true;
          this.changed();
        });
        this.fsWatchers.push(w);
      } catch (err) {
        this.log.warn({ dir: d, err: errorMessage(err) }, 'cannot watch a policy directory; relying on rescans');
      }
    }
    this.watchedDirs = shape;
  }

  /** A watch on `dir` fired for entry `name`: reload soon (the walk a reload makes when needed re-arms). */
  private onEvent(dir: string, name: string | Buffer | null): void {
    if (typeof name === 'string' && name !== '') this.changedPaths.add(policyPath(this.dir, join(dir, name)));
    else this.walkNeeded = true;
    this.changed();
  }

  private async rescan(): Promise<void> {
    if (this.stopped) return;
    rescansTotal.inc();
    // A directory that is itself a symlink swapped to a new target keeps the old watch alive on the old target.
    const real = await realpath(this.dir).catch(() => undefined);
    if (this.fsEvents && (this.fsWatchers.length === 0 || real !== this.watchedRealDir)) {
      this.watchedDirs = '';
      await this.arm();
    }
    this.walkNeeded = true;
    this.changed();
  }

  /**
   * Something may have changed. The first change after a quiet period is read at once (leadingMs): a policy
   * edit reaches Envoys in milliseconds, not after a debounce. Changes that follow it are coalesced into one
   * reload after debounceMs of quiet, never later than maxDelayMs after the first; the changed paths taken before
   * each read makes sure the last write is always read.
   */
  private changed(): void {
    if (this.stopped) return;
    const now = Date.now();
    // One write is often several events (change, rename): those inside the grace join the leading read.
    if (this.leadingPending) return;
    const leading = this.lastChangeAt === undefined || now - this.lastChangeAt > this.debounceMs;
    this.lastChangeAt = now;
    if (leading) this.burstStartedAt = now;
    this.burstStartedAt ??= now;
    clearTimeout(this.debounceTimer);
    const wait = leading ? this.leadingMs : Math.max(0, Math.min(this.debounceMs, this.burstStartedAt + this.maxDelayMs - now));
    this.leadingPending = leading;
    this.debounceTimer = setTimeout(() => {
      this.leadingPending = false;
      this.burstStartedAt = undefined;
      void this.schedule(false);
    }, wait);
    this.debounceTimer.unref();
  }

  /** Runs reloads one at a time; a request while one is waiting to start joins it instead of queueing another. */
  private schedule(force: boolean): Promise<ReloadOutcome | undefined> {
    this.forceQueued ||= force;
    if (this.queued) return this.queued;
    const run: Promise<ReloadOutcome | undefined> = this.tail.then(() => {
      this.queued = undefined;
      const forced = this.forceQueued;
      this.forceQueued = false;
      return this.reloadOnce(forced);
    });
    this.queued = run;
    this.tail = run.catch((err: unknown) => this.log.error({ dir: this.dir, err: errorMessage(err) }, 'policy reload failed unexpectedly'));
    return run;
  }

  private async reloadOnce(force: boolean): Promise<ReloadOutcome | undefined> {
    if (this.stopped) return undefined;
    // Taken before reading: an event during the read is kept for the next reload, so the last write is read.
    const paths = this.changedPaths;
    const walk = force || this.walkNeeded;
    this.changedPaths = new Set();
    this.walkNeeded = false;
    let read = walk ? undefined : await this.reader.readChanged(paths);
    if (!read) {
      // Armed before the walk: a directory the walk finds is watched before its files are read.
      await this.arm();
      read = await this.reader.readAll();
    }
    this.lookAgainAt(read);
    if (!force && !read.changed) return undefined;
    let load = policyFromRead(this.dir, read);
    if (load.ok && this.prepare) {
      await this.prepare(load.policy).catch((err: unknown) => this.log.warn({ err: errorMessage(err) }, 'preparing the policy check failed; checking with what is known'));
    }
    // Files that say what already serves are not an edit: what the registry reveals about them is an alert of
    // the serving policy (the controller reports it), not a reason to show the last edit's issues as current.
    if (load.ok && this.check && load.policy.hash !== this.serving?.hash) {
      const issues = this.check(load.policy);
      if (issues.length > 0) load = { ok: false, issues };
    }
    const now = Date.now() / 1000;
    let outcome: ReloadOutcome;
    if (!load.ok) {
      this.issues = load.issues;
      issuesGauge.set(load.issues.length);
      outcome = { result: 'rejected', policy: this.serving, issues: load.issues };
      this.logRejection(load.issues);
    } else {
      this.issues = undefined;
      issuesGauge.set(0);
      lastSuccess.set(now);
      if (this.serving?.hash === load.policy.hash) {
        outcome = { result: 'unchanged', policy: this.serving, issues: [] };
        this.log.debug({ hash: load.policy.hash }, 'policy reloaded; unchanged');
      } else {
        this.serving = load.policy;
        lastApplied.set(now);
        hashPrefix.set(parseInt(load.policy.hash.slice(0, 12), 16));
        readyGauge.set(1);
        outcome = { result: 'applied', policy: load.policy, issues: [] };
        const { hash, files, models, consumers } = load.policy;
        this.log.info({ hash, files: files.length, models: models.size, consumers: consumers.size }, 'policy applied');
        for (const w of this.readyWaiters.splice(0)) w.resolve(load.policy);
      }
    }
    reloadsTotal.inc({ result: outcome.result });
    if (outcome.result === 'applied' && outcome.policy) this.emitSafely('policy', outcome.policy);
    if (outcome.result === 'rejected') this.emitSafely('rejected', outcome.issues);
    this.emitSafely('reload', outcome);
    return outcome;
  }

  /** Files found empty mid-write keep their old text for a while: read them again when that time is up. */
  private lookAgainAt(read: PolicyDirRead): void {
    clearTimeout(this.settleTimer);
    if (read.settleAt === undefined || this.stopped) return;
    this.log.debug({ files: read.settling }, 'policy files found empty; taken for a write in progress for now');
    const files = read.settling;
    this.settleTimer = setTimeout(() => {
      for (const f of files) this.changedPaths.add(f);
      void this.schedule(false);
    }, Math.max(0, read.settleAt - Date.now()) + 1);
    this.settleTimer.unref();
  }

  private logRejection(issues: readonly PolicyIssue[]): void {
    for (const i of issues) {
      // The message is the line `flowgate validate` prints (file:line:col: path: message), so a grep finds it.
      this.log.error({ file: displayFile(this.dir, i.file), line: i.line, col: i.col, path: i.path, code: i.code, reason: i.message }, formatIssue(i, this.dir));
    }
    if (this.serving) {
      this.log.error({ issues: issues.length, serving: this.serving.hash }, `policy rejected (${issues.length} issues); the last good policy keeps serving`);
    } else {
      readyGauge.set(0);
      this.log.error({ issues: issues.length, serving: null }, `policy rejected (${issues.length} issues); no good policy has been loaded, so none is serving`);
    }
  }

  /** A throwing listener must not stop the watcher from serving the next edit. */
  private emitSafely<K extends keyof PolicyWatcherEvents>(event: K, ...args: PolicyWatcherEvents[K]): void {
    try {
      // EventEmitter's generic signature is conditional on K, which TypeScript cannot resolve inside a generic body.
      (this.emit as (e: K, ...a: PolicyWatcherEvents[K]) => boolean)(event, ...args);
    } catch (err) {
      this.log.error({ event, err: errorMessage(err) }, 'policy listener threw');
    }
  }
}
