import { readdir, readFile, realpath, stat } from 'node:fs/promises';
import { join, sep } from 'node:path';
import { checkDeclarations, checkReferences, checkRollouts, type DeclaredDocument, type ValidDocument } from './checks.js';
import { checkSplit } from './split-checks.js';
import { closest, compareIssues, KEY_MESSAGE_SEPARATOR, policyErrorMap, shown, type PolicyIssue } from './issues.js';
import { assemblePolicy, defaultGateway, type Policy } from './policy.js';
import { KIND_SCHEMAS, POLICY_KINDS, type PolicyKind } from './schema/index.js';
import { parsePolicyFile, type SourceDocument } from './source.js';

/**
 * Loading a policy directory: every *.yaml / *.yml file (recursively, dot-entries skipped), every document in
 * each, schema-validated and cross-checked. The result is all or nothing: one issue anywhere and no Policy.
 */

export type PolicyLoad = { readonly ok: true; readonly policy: Policy } | { readonly ok: false; readonly issues: readonly PolicyIssue[] };

/** One policy file's text, with its path relative to the policy directory. */
export interface PolicyFileText {
  readonly file: string;
  readonly text: string;
}

// Far above any real policy file; a bigger one is a mistake (a data dump in the wrong directory).
const MAX_FILE_BYTES = 16 * 1024 * 1024;

function isPolicyFileName(name: string): boolean {
  const lower = name.toLowerCase();
  return lower.endsWith('.yaml') || lower.endsWith('.yml');
}

/** One entry the walk found: a policy file, with the path it really is (symlinks resolved), or a refused link. */
export interface PolicyDirScan {
  /** Policy files, relative to the directory, sorted, each with the real path it is read from. */
  readonly files: readonly { readonly file: string; readonly real: string }[];
  /** Directories to watch (as reached from `dir`), sorted. */
  readonly directories: readonly string[];
  /** Relative paths of symlinks that lead outside the directory: never read, never followed. */
  readonly outside: readonly string[];
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
  return { files, directories: directories.sort(), outside: outside.sort() };
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

/** Reads and validates the policy directory `dir`; never throws, every failure is an issue. */
export async function loadPolicyDir(dir: string): Promise<PolicyLoad> {
  let scan: PolicyDirScan;
  try {
    scan = await scanPolicyDir(dir);
  } catch (err) {
    return { ok: false, issues: [{ file: '', line: 0, col: 0, path: '', message: `cannot read the policy directory: ${ioReason(err)}`, code: 'io' }] };
  }
  const { files } = scan;
  const issues: PolicyIssue[] = scan.outside.map((file) => ({
    file,
    line: 0,
    col: 0,
    path: '',
    message: 'is a symbolic link that leads outside the policy directory; it is not read (only links that stay inside it, like a ConfigMap\'s ..data, are followed)',
    code: 'io' as const,
  }));
  if (files.length === 0 && issues.length === 0) {
    // An empty directory is far more often a failed mount than a wish to unpublish every model.
    return { ok: false, issues: [{ file: '', line: 0, col: 0, path: '', message: 'no policy files (*.yaml, *.yml) found', code: 'io' }] };
  }
  const texts: PolicyFileText[] = [];
  for (const { file, real } of files) {
    try {
      // The path the walk resolved and checked, not the link: re-pointing the link after the check changes nothing.
      const info = await stat(real);
      if (info.size > MAX_FILE_BYTES) {
        issues.push({ file, line: 0, col: 0, path: '', message: `file is ${info.size} bytes; policy files are limited to ${MAX_FILE_BYTES}`, code: 'io' });
        continue;
      }
      texts.push({ file, text: await readFile(real, 'utf8') });
    } catch (err) {
      // Usually an editor or a ConfigMap swap replacing the file right now; the watcher reloads after it.
      issues.push({ file, line: 0, col: 0, path: '', message: `cannot read: ${ioReason(err)}`, code: 'io' });
    }
  }
  if (issues.length > 0) return { ok: false, issues: issues.sort(compareIssues) };
  return policyFromFiles(dir, texts);
}

function ioReason(err: unknown): string {
  const code = (err as { code?: unknown } | null)?.code;
  const message = err instanceof Error ? err.message : String(err);
  return typeof code === 'string' ? `${code}: ${message.replace(/^\w+: /, '')}` : message;
}

/** Validates policy file texts as one policy; pure, so the CLI's `validate` and tests need no directory. */
export function policyFromFiles(dir: string, files: readonly PolicyFileText[]): PolicyLoad {
  const sorted = [...files].sort((a, b) => (a.file < b.file ? -1 : a.file > b.file ? 1 : 0));
  const issues: PolicyIssue[] = [];
  const declared: DeclaredDocument[] = [];
  let valid: ValidDocument[] = [];
  let brokenGateway = false;

  for (const { file, text } of sorted) {
    const checked = checkedFile(dir, file, text);
    issues.push(...checked.issues);
    declared.push(...checked.declared);
    valid.push(...checked.valid);
    if (checked.brokenGateway) brokenGateway = true;
  }

  issues.push(...checkDeclarations(declared));
  // Only the first of two same-named documents is judged further: its twin is already an issue, not a second model.
  const firstOfName = new Set<string>();
  valid = valid.filter((d) => {
    const key = d.kind === 'Gateway' ? 'Gateway' : `${d.kind}/${d.kind === 'Rollout' ? d.policy.model : d.policy.name}`;
    if (firstOfName.has(key)) return false;
    firstOfName.add(key);
    return true;
  });
  const gatewayDoc = valid.find((d): d is Extract<ValidDocument, { kind: 'Gateway' }> => d.kind === 'Gateway');
  const names = (kind: PolicyKind): Set<string> =>
    new Set(declared.filter((d) => d.kind === kind && d.name !== undefined).map((d) => d.name as string));
  const parts = {
    dir,
    files: sorted.map((f) => f.file),
    gateway: gatewayDoc ? { policy: gatewayDoc.policy, source: gatewayDoc.source } : undefined,
    models: valid.flatMap((d) => (d.kind === 'Model' ? [{ policy: d.policy, source: d.source }] : [])),
    consumers: valid.flatMap((d) => (d.kind === 'Consumer' ? [{ policy: d.policy, source: d.source }] : [])),
    rollouts: valid.flatMap((d) => (d.kind === 'Rollout' ? [{ policy: d.policy, source: d.source }] : [])),
    pipelines: valid.flatMap((d) => (d.kind === 'Pipeline' ? [{ policy: d.policy, source: d.source }] : [])),
  };
  const gateway = parts.gateway?.policy ?? defaultGateway();
  const known = { models: names('Model'), consumers: names('Consumer'), pipelines: names('Pipeline'), gatewayValid: !brokenGateway };
  issues.push(...checkReferences(valid, gateway, parts.gateway?.source, known), ...checkRollouts(valid, known), ...checkSplit(valid, gateway));

  if (issues.length > 0) return { ok: false, issues: dedupe(issues).sort(compareIssues) };
  return { ok: true, policy: assemblePolicy(parts) };
}

/** One file parsed and each of its documents validated on its own (what does not depend on the other files). */
interface CheckedFile {
  readonly text: string;
  readonly issues: readonly PolicyIssue[];
  readonly declared: readonly DeclaredDocument[];
  readonly valid: readonly ValidDocument[];
  readonly brokenGateway: boolean;
}

/**
 * The last check of each file, by directory and file: a file whose text is unchanged is not parsed again, and
 * its documents keep their (frozen) objects, so the IR reuses what it built from them. An edit of one file in
 * a thousand costs one file's parse, and one model's rebuild.
 */
const checkedFiles = new Map<string, CheckedFile>();
const MAX_CHECKED_FILES = 100_000;

function checkedFile(dir: string, file: string, text: string): CheckedFile {
  const key = `${dir}\u0000${file}`;
  const known = checkedFiles.get(key);
  if (known && known.text === text) return known;
  const issues: PolicyIssue[] = [];
  const declared: DeclaredDocument[] = [];
  const valid: ValidDocument[] = [];
  let brokenGateway = false;
  const parsed = parsePolicyFile(file, text);
  issues.push(...parsed.issues);
  for (const source of parsed.documents) {
    const kind = documentKind(source, issues);
    if (kind === undefined) continue;
    // A Rollout is named by the Model it rolls out: one per Model.
    const name = (source.value as { name?: unknown; model?: unknown })[kind === 'Rollout' ? 'model' : 'name'];
    declared.push({ kind, name: typeof name === 'string' ? name : undefined, source });
    const result = validateDocument(kind, source);
    if (result.issues.length > 0) {
      issues.push(...result.issues);
      if (kind === 'Gateway') brokenGateway = true;
    } else if (result.valid) {
      valid.push(result.valid);
    }
  }
  const checked = { text, issues, declared, valid, brokenGateway };
  if (checkedFiles.size >= MAX_CHECKED_FILES) checkedFiles.clear();
  checkedFiles.set(key, checked);
  return checked;
}

/** The document's kind, or undefined after reporting why it has none that Flowgate knows. */
function documentKind(source: SourceDocument, issues: PolicyIssue[]): PolicyKind | undefined {
  const value = source.value;
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    // shown() cuts the value: a file that is not a policy (a data dump) must not be echoed whole.
    const got = Array.isArray(value) ? 'a list' : `${typeof value} ${shown(value)}`;
    issues.push(source.issue([], `a policy document must be a mapping with a kind (got ${got})`, 'schema'));
    return undefined;
  }
  const kind = (value as { kind?: unknown }).kind;
  if ((POLICY_KINDS as readonly unknown[]).includes(kind)) return kind as PolicyKind;
  if (kind === undefined) {
    issues.push(source.issue(['kind'], `is required: one of ${POLICY_KINDS.join(', ')}`, 'schema'));
  } else {
    const guess = typeof kind === 'string' ? closest(kind, POLICY_KINDS) : undefined;
    const hint = guess === undefined ? '' : ` (did you mean '${guess}'?)`;
    issues.push(source.issue(['kind'], `unknown kind ${JSON.stringify(kind)}${hint}; one of ${POLICY_KINDS.join(', ')}`, 'schema'));
  }
  return undefined;
}

/** Runs the kind's schema; zod issues become positioned PolicyIssues (one per unknown key, at the key). */
function validateDocument(kind: PolicyKind, source: SourceDocument): { valid?: ValidDocument; issues: PolicyIssue[] } {
  const result = KIND_SCHEMAS[kind].safeParse(source.value, { error: policyErrorMap });
  if (result.success) {
    // The schema is chosen by `kind`, so the output's kind matches; TypeScript cannot see through the index.
    return { valid: { kind, source, policy: result.data } as ValidDocument, issues: [] };
  }
  const issues: PolicyIssue[] = [];
  const typos = new Map<string, string[]>();
  for (const iss of result.error.issues) {
    if (iss.code === 'unrecognized_keys') typos.set(JSON.stringify(iss.path), iss.keys);
  }
  for (const iss of result.error.issues) {
    const path = iss.path.map((p) => (typeof p === 'number' ? p : String(p)));
    const key = path[path.length - 1];
    if (iss.code === 'invalid_type' && iss.input === undefined && typeof key === 'string') {
      // `wieght: 10` already says "did you mean 'weight'?"; "weight is required" on top would be the same fault twice.
      const siblings = typos.get(JSON.stringify(path.slice(0, -1))) ?? [];
      if (siblings.some((typo) => closest(typo, [key]) === key)) continue;
    }
    if (iss.code === 'unrecognized_keys') {
      const messages = iss.message.split(KEY_MESSAGE_SEPARATOR);
      iss.keys.forEach((key, i) => {
        issues.push(source.issue([...path, key], messages[i] ?? `unknown key '${key}'`, 'unknown-key', 'key'));
      });
    } else {
      issues.push(source.issue(path, iss.message, 'schema'));
    }
  }
  return { issues };
}

/** Zod can report one fault twice through nested checks; an SRE should read it once. */
function dedupe(issues: PolicyIssue[]): PolicyIssue[] {
  const seen = new Set<string>();
  return issues.filter((i) => {
    const key = `${i.file}:${i.line}:${i.col}:${i.path}:${i.message}`;
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}
