import { readdir, readFile, realpath, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { checkDeclarations, checkReferences, type DeclaredDocument, type ValidDocument } from './checks.js';
import { closest, compareIssues, KEY_MESSAGE_SEPARATOR, policyErrorMap, type PolicyIssue } from './issues.js';
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

/**
 * Relative paths of the policy files under `dir`, sorted. Symlinks are followed (a Kubernetes ConfigMap is a
 * directory of symlinks into `..data`), each real directory at most once so a link loop cannot hang the walk.
 */
export async function listPolicyFiles(dir: string): Promise<string[]> {
  const found: string[] = [];
  const seen = new Set<string>();
  const walk = async (abs: string, rel: string): Promise<void> => {
    const real = await realpath(abs);
    if (seen.has(real)) return;
    seen.add(real);
    for (const entry of await readdir(abs, { withFileTypes: true })) {
      if (entry.name.startsWith('.')) continue;
      const childAbs = join(abs, entry.name);
      const childRel = rel === '' ? entry.name : `${rel}/${entry.name}`;
      let isDir = entry.isDirectory();
      let isFile = entry.isFile();
      if (entry.isSymbolicLink()) {
        const target = await stat(childAbs).catch(() => undefined);
        // A dangling link is skipped like any non-policy entry; ConfigMap swaps leave none behind.
        isDir = target?.isDirectory() ?? false;
        isFile = target?.isFile() ?? false;
      }
      if (isDir) await walk(childAbs, childRel);
      else if (isFile && isPolicyFileName(entry.name)) found.push(childRel);
    }
  };
  await walk(dir, '');
  return found.sort();
}

/**
 * The directories a watcher must watch to see every edit of the policy: `dir` and, under it, each
 * non-dot directory (followed through symlinks, each real directory once). ConfigMap `..data` swaps happen
 * in `dir` itself, which is always watched.
 */
export async function policyDirectories(dir: string): Promise<string[]> {
  const out: string[] = [];
  const seen = new Set<string>();
  const walk = async (abs: string): Promise<void> => {
    const real = await realpath(abs);
    if (seen.has(real)) return;
    seen.add(real);
    out.push(abs);
    for (const entry of await readdir(abs, { withFileTypes: true })) {
      if (entry.name.startsWith('.')) continue;
      const child = join(abs, entry.name);
      const isDir = entry.isDirectory() || (entry.isSymbolicLink() && (await stat(child).catch(() => undefined))?.isDirectory() === true);
      if (isDir) await walk(child);
    }
  };
  await walk(dir);
  return out.sort();
}

/** Reads and validates the policy directory `dir`; never throws, every failure is an issue. */
export async function loadPolicyDir(dir: string): Promise<PolicyLoad> {
  let files: string[];
  try {
    files = await listPolicyFiles(dir);
  } catch (err) {
    return { ok: false, issues: [{ file: '', line: 0, col: 0, path: '', message: `cannot read the policy directory: ${ioReason(err)}`, code: 'io' }] };
  }
  if (files.length === 0) {
    // An empty directory is far more often a failed mount than a wish to unpublish every model.
    return { ok: false, issues: [{ file: '', line: 0, col: 0, path: '', message: 'no policy files (*.yaml, *.yml) found', code: 'io' }] };
  }
  const texts: PolicyFileText[] = [];
  const issues: PolicyIssue[] = [];
  for (const file of files) {
    try {
      const abs = join(dir, file);
      const info = await stat(abs);
      if (info.size > MAX_FILE_BYTES) {
        issues.push({ file, line: 0, col: 0, path: '', message: `file is ${info.size} bytes; policy files are limited to ${MAX_FILE_BYTES}`, code: 'io' });
        continue;
      }
      texts.push({ file, text: await readFile(abs, 'utf8') });
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
    const parsed = parsePolicyFile(file, text);
    issues.push(...parsed.issues);
    for (const source of parsed.documents) {
      const kind = documentKind(source, issues);
      if (kind === undefined) continue;
      const name = (source.value as { name?: unknown }).name;
      declared.push({ kind, name: typeof name === 'string' ? name : undefined, source });
      const result = validateDocument(kind, source);
      if (result.issues.length > 0) {
        issues.push(...result.issues);
        if (kind === 'Gateway') brokenGateway = true;
      } else if (result.valid) {
        valid.push(result.valid);
      }
    }
  }

  issues.push(...checkDeclarations(declared));
  // Only the first of two same-named documents is judged further: its twin is already an issue, not a second model.
  const firstOfName = new Set<string>();
  valid = valid.filter((d) => {
    const key = d.kind === 'Gateway' ? 'Gateway' : `${d.kind}/${d.policy.name}`;
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
    pipelines: valid.flatMap((d) => (d.kind === 'Pipeline' ? [{ policy: d.policy, source: d.source }] : [])),
  };
  const gateway = parts.gateway?.policy ?? defaultGateway();
  issues.push(
    ...checkReferences(valid, gateway, parts.gateway?.source, {
      models: names('Model'),
      consumers: names('Consumer'),
      pipelines: names('Pipeline'),
      gatewayValid: !brokenGateway,
    }),
  );

  if (issues.length > 0) return { ok: false, issues: dedupe(issues).sort(compareIssues) };
  return { ok: true, policy: assemblePolicy(parts) };
}

/** The document's kind, or undefined after reporting why it has none that Flowgate knows. */
function documentKind(source: SourceDocument, issues: PolicyIssue[]): PolicyKind | undefined {
  const value = source.value;
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    const got = Array.isArray(value) ? 'a list' : `${typeof value} ${JSON.stringify(value)}`;
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
