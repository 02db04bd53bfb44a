import { lstat, readdir, readFile, realpath, stat } from 'node:fs/promises';
import type { Stats } from 'node:fs';
import { isAbsolute, join, relative, sep } from 'node:path';
import { compareIssues, type PolicyIssue } from './issues.js';

/**
 * The policy directory's I/O: the walk that finds the policy files (every *.yaml / *.yml, recursively,
 * dot-entries skipped, symlinks followed only inside the directory), and PolicyDirReader, which keeps each
 * file's stat signature and text so that a reload reads only what changed: a full pass stats every file
 * and reads the ones whose signature moved; a pass over the paths a file-system event named stats those
 * alone. Validation is not here (load.ts): this module returns texts and I/O issues.
 */

/** One policy file's text, with its path relative to the policy directory. */
export interface PolicyFileText {
  readonly file: string;
  readonly text: string;
}

/** One entry the walk found: a policy file, with the path it really is (symlinks resolved), or a refused link. */
export interface PolicyDirScan {
  /** Policy files, relative to the directory, sorted, each with the real path it is read from. */
  readonly files: readonly { readonly file: string; readonly real: string }[];
  /** Directories to watch (as reached from `dir`), sorted. */
  readonly directories: readonly string[];
  /** Relative paths of symlinks that lead outside the directory: never read, never followed. */
  readonly outside: readonly string[];
  /** Symlinks met (followed or refused): with none, every file is where its relative path says. */
  readonly links: number;
}

// Far above any real policy file; a bigger one is a mistake (a data dump in the wrong directory).
export const MAX_POLICY_FILE_BYTES = 16 * 1024 * 1024;

/** True for the names the loader reads: *.yaml and *.yml, any case. */
export function isPolicyFileName(name: string): boolean {
  const lower = name.toLowerCase();
  return lower.endsWith('.yaml') || lower.endsWith('.yml');
}

/** True when `real` is `root` or below it (both real paths). */
function inside(root: string, real: string): boolean {
  return real === root || real.startsWith(root.endsWith(sep) ? root : root + sep);
}

/**
 * Walks the policy directory. Symlinks are followed only when they resolve inside it: a Kubernetes ConfigMap
 * is a directory of links into its own `..data`, and that is the one layout that needs them. A link that
 * leads anywhere else (`/etc/passwd`, another team's directory) is reported in `outside` and its target is
 * never read, so neither its content nor its existence reaches a policy or an error message. Each real
 * directory is walked once, so a link loop cannot hang the walk.
 */
export async function scanPolicyDir(dir: string): Promise<PolicyDirScan> {
  const root = await realpath(dir);
  const files: { file: string; real: string }[] = [];
  const directories: string[] = [];
  const outside: string[] = [];
  const seen = new Set<string>();
  let links = 0;
  const walk = async (abs: string, real: string, rel: string): Promise<void> => {
    if (seen.has(real)) return;
    seen.add(real);
    directories.push(abs);
    for (const entry of await readdir(real, { withFileTypes: true })) {
      if (entry.name.startsWith('.')) continue;
      const childAbs = join(abs, entry.name);
      const childRel = rel === '' ? entry.name : `${rel}/${entry.name}`;
      let childReal = join(real, entry.name);
      let isDir = entry.isDirectory();
      let isFile = entry.isFile();
      if (entry.isSymbolicLink()) {
        links++;
        const target = await realpath(childReal).catch(() => undefined);
        // A dangling link is skipped like any non-policy entry; ConfigMap swaps leave none behind.
        if (target === undefined) continue;
        if (!inside(root, target)) {
          if (isPolicyFileName(entry.name) || (await stat(target).catch(() => undefined))?.isDirectory()) outside.push(childRel);
          continue;
        }
        const info = await stat(target).catch(() => undefined);
        childReal = target;
        isDir = info?.isDirectory() ?? false;
        isFile = info?.isFile() ?? false;
      }
      if (isDir) await walk(childAbs, childReal, childRel);
      else if (isFile && isPolicyFileName(entry.name)) files.push({ file: childRel, real: childReal });
    }
  };
  await walk(dir, root, '');
  files.sort((a, b) => (a.file < b.file ? -1 : a.file > b.file ? 1 : 0));
  return { files, directories: directories.sort(), outside: outside.sort(), links };
}

/** Relative paths of the policy files under `dir` (symlinks followed only inside it), sorted. */
export async function listPolicyFiles(dir: string): Promise<string[]> {
  return (await scanPolicyDir(dir)).files.map((f) => f.file);
}

/**
 * The directories a watcher must watch to see every edit of the policy: `dir` and, under it, each
 * non-dot directory (through symlinks that stay inside it, each real directory once). ConfigMap `..data`
 * swaps happen in `dir` itself, which is always watched.
 */
export async function policyDirectories(dir: string): Promise<string[]> {
  return [...(await scanPolicyDir(dir)).directories];
}

/** What one read of the directory found. */
export interface PolicyDirRead {
  /** False when every file, its signature and every I/O issue are what the previous read found. */
  readonly changed: boolean;
  /** The texts read, sorted by file. */
  readonly files: readonly PolicyFileText[];
  /** I/O issues (unreadable directory or file, a file too big, a link leading outside), sorted. */
  readonly issues: readonly PolicyIssue[];
  /**
   * Files that had content and were found empty less than the settle time ago: most likely a writer between
   * its truncate and its write. Their previous text stands in `files` until they have content again or have
   * stayed empty for the settle time; read them again at `settleAt` (epoch ms).
   */
  readonly settling: readonly string[];
  readonly settleAt: number | undefined;
}

/** What the reader knows of one policy file. */
interface KnownFile {
  readonly real: string;
  /** dev:ino:size:mtime:ctime when it was read; 'gone' when stat failed. */
  readonly signature: string;
  readonly text: string | undefined;
  readonly issue: PolicyIssue | undefined;
  /** When a file that had content was first found empty, while it is settling (its old text kept). */
  readonly emptySince?: number;
}

/** The signature of a settling file: never a real one, so the next look reads the file again. */
const SETTLING = 'settling';

/** How long a file that had content may read as empty before the emptiness is taken for an edit. */
export const EMPTY_SETTLE_MS = 1_000;

const signatureOf = (s: Stats): string => `${s.dev}:${s.ino}:${s.size}:${s.mtimeMs}:${s.ctimeMs}`;

function ioReason(err: unknown): string {
  const code = (err as { code?: unknown } | null)?.code;
  const message = err instanceof Error ? err.message : String(err);
  return typeof code === 'string' ? `${code}: ${message.replace(/^\w+: /, '')}` : message;
}

const ioIssue = (file: string, message: string): PolicyIssue => ({ file, line: 0, col: 0, path: '', message, code: 'io' });

/**
 * PolicyDirReader: reads a policy directory again and again, reading a file only when its stat signature
 * changed since the last read. readAll() walks the whole tree (the periodic rescan, a forced reload, a
 * directory added or removed); readChanged() looks only at the paths a file-system event named, and says
 * when it cannot (symlinks in the tree, a directory among the paths): then the caller does a full pass.
 * A signature is taken before the file is read, so a write during the read changes the next signature and
 * is read then (the event it raises names the file). A file with content that is found empty is, for
 * `settleMs`, taken for a write in progress (`writeFile` truncates, then writes; a busy machine can run a
 * read in between): its previous text is kept and the read says when to look again. One that stays empty
 * that long is read as empty.
 */
export class PolicyDirReader {
  private readonly known = new Map<string, KnownFile>();
  /** Relative paths of the directories the last walk entered ('' is the directory itself). */
  private readonly directories = new Set<string>();
  private outside: readonly string[] = [];
  /** True when the last walk met no symlink: an event's path is then the file itself. */
  private plain = false;
  private dirIssue: PolicyIssue | undefined;
  private sorted: PolicyFileText[] | undefined;

  /** `dir` as the user typed it: issues name files relative to it. */
  constructor(
    readonly dir: string,
    private readonly settleMs: number = EMPTY_SETTLE_MS,
    private readonly now: () => number = Date.now,
  ) {}

  /** Walks the whole tree, stats every policy file and reads those whose signature changed. */
  async readAll(): Promise<PolicyDirRead> {
    let scan: PolicyDirScan;
    try {
      scan = await scanPolicyDir(this.dir);
    } catch (err) {
      const issue = ioIssue('', `cannot read the policy directory: ${ioReason(err)}`);
      const changed = this.dirIssue?.message !== issue.message;
      this.forget();
      this.dirIssue = issue;
      return { changed, files: [], issues: [issue], settling: [], settleAt: undefined };
    }
    let changed = this.dirIssue !== undefined || scan.outside.join('\n') !== this.outside.join('\n');
    this.dirIssue = undefined;
    this.outside = scan.outside;
    this.plain = scan.links === 0;
    this.directories.clear();
    for (const d of scan.directories) this.directories.add(policyPath(this.dir, d));
    const seen = new Set<string>();
    for (const { file, real } of scan.files) {
      seen.add(file);
      if (await this.refresh(file, real)) changed = true;
    }
    for (const file of [...this.known.keys()]) {
      if (seen.has(file)) continue;
      this.known.delete(file);
      this.sorted = undefined;
      changed = true;
    }
    return this.result(changed);
  }

  /**
   * Looks only at `paths` (relative to the directory, as events name them). Undefined when they cannot be
   * judged one by one (the tree holds symlinks, a path is or was a directory, no walk has been made yet):
   * the caller then calls readAll().
   */
  async readChanged(paths: Iterable<string>): Promise<PolicyDirRead | undefined> {
    if (!this.plain || this.dirIssue) return undefined;
    let changed = false;
    for (const path of paths) {
      // The directory itself, or a path outside it: only a walk can tell.
      if (path === '' || isAbsolute(path) || path === '..' || path.startsWith('../')) return undefined;
      // A dot-entry is never read (a walk skips it); a rename out of one names the target too.
      if (path.split('/').some((part) => part.startsWith('.'))) continue;
      const abs = join(this.dir, path);
      let info: Stats;
      try {
        info = await lstat(abs);
      } catch (err) {
        if ((err as { code?: unknown }).code !== 'ENOENT') return undefined;
        if (this.directories.has(path)) return undefined;
        if (this.known.delete(path)) {
          this.sorted = undefined;
          changed = true;
        }
        continue;
      }
      if (info.isDirectory() || info.isSymbolicLink()) return undefined;
      if (!info.isFile() || !isPolicyFileName(path)) continue;
      if (await this.refresh(path, abs, info)) changed = true;
    }
    return this.result(changed);
  }

  private forget(): void {
    this.known.clear();
    this.directories.clear();
    this.outside = [];
    this.plain = false;
    this.sorted = undefined;
  }

  /** Stats `file` (unless given) and reads it if its signature changed; true when what is known of it changed. */
  private async refresh(file: string, real: string, given?: Stats): Promise<boolean> {
    const before = this.known.get(file);
    let info = given;
    if (!info || given?.isSymbolicLink()) {
      try {
        info = await stat(real);
      } catch (err) {
        // Usually an editor or a ConfigMap swap replacing the file right now; the watcher reloads after it.
        return this.store(file, { real, signature: 'gone', text: undefined, issue: ioIssue(file, `cannot read: ${ioReason(err)}`) }, before);
      }
    }
    const signature = signatureOf(info);
    if (before && before.real === real && before.signature === signature && before.signature !== 'gone') return false;
    if (info.size > MAX_POLICY_FILE_BYTES) {
      return this.store(file, { real, signature, text: undefined, issue: ioIssue(file, `file is ${info.size} bytes; policy files are limited to ${MAX_POLICY_FILE_BYTES}`) }, before);
    }
    try {
      // The path the walk resolved and checked, not the link: re-pointing the link after the check changes nothing.
      const text = await readFile(real, 'utf8');
      if (text === '' && before?.text) {
        const since = before.emptySince ?? this.now();
        if (this.now() - since < this.settleMs) return this.store(file, { ...before, real, signature: SETTLING, emptySince: since }, before);
      }
      return this.store(file, { real, signature, text, issue: undefined }, before);
    } catch (err) {
      return this.store(file, { real, signature, text: undefined, issue: ioIssue(file, `cannot read: ${ioReason(err)}`) }, before);
    }
  }

  private store(file: string, next: KnownFile, before: KnownFile | undefined): boolean {
    this.known.set(file, next);
    if (!before) this.sorted = undefined;
    else if (this.sorted && before.text !== next.text) this.sorted = undefined;
    return !before || before.text !== next.text || before.issue?.message !== next.issue?.message;
  }

  private result(changed: boolean): PolicyDirRead {
    const issues: PolicyIssue[] = this.outside.map((file) =>
      ioIssue(file, "is a symbolic link that leads outside the policy directory; it is not read (only links that stay inside it, like a ConfigMap's ..data, are followed)"),
    );
    const settling: string[] = [];
    let settleAt: number | undefined;
    for (const [file, k] of this.known) {
      if (k.issue) issues.push(k.issue);
      if (k.emptySince === undefined) continue;
      settling.push(file);
      settleAt = Math.min(settleAt ?? Infinity, k.emptySince + this.settleMs);
    }
    if (!this.sorted) {
      this.sorted = [];
      for (const [file, k] of this.known) if (k.text !== undefined) this.sorted.push({ file, text: k.text });
      this.sorted.sort((a, b) => (a.file < b.file ? -1 : a.file > b.file ? 1 : 0));
    }
    return { changed, files: this.sorted, issues: issues.sort(compareIssues), settling: settling.sort(), settleAt };
  }
}

/** `abs` relative to the policy directory `dir`, '/'-separated ('' for `dir` itself): how files and events are named. */
export function policyPath(dir: string, abs: string): string {
  const rel = relative(dir, abs);
  return sep === '/' ? rel : rel.split(sep).join('/');
}
