import { checkDeclarations, checkReferences, checkRollouts, type DeclaredDocument, type ValidDocument } from './checks.js';
import { checkSplit } from './split-checks.js';
import { CleanPolicyIndex } from './clean-edits.js';
import { closest, compareIssues, KEY_MESSAGE_SEPARATOR, policyErrorMap, shown, type PolicyIssue } from './issues.js';
import { assemblePolicy, defaultGateway, type Policy, type PolicyParts } from './policy.js';
import { KIND_SCHEMAS, POLICY_KINDS, type ConsumerPolicy, type ModelPolicy, type PipelinePolicy, type PolicyKind, type RolloutPolicy } from './schema/index.js';
import { PolicyDirReader, type PolicyDirRead, type PolicyFileText } from './dir-reader.js';
import { parsePolicyFile, type SourceDocument } from './source.js';

/**
 * Loading a policy directory: every *.yaml / *.yml file (recursively, dot-entries skipped), every document in
 * each, schema-validated and cross-checked. The result is all or nothing: one issue anywhere and no Policy.
 */

export type PolicyLoad = { readonly ok: true; readonly policy: Policy } | { readonly ok: false; readonly issues: readonly PolicyIssue[] };

export { listPolicyFiles, policyDirectories, scanPolicyDir, type PolicyDirScan, type PolicyFileText } from './dir-reader.js';

/** Reads and validates the policy directory `dir`; never throws, every failure is an issue. */
export async function loadPolicyDir(dir: string): Promise<PolicyLoad> {
  return policyFromRead(dir, await new PolicyDirReader(dir).readAll());
}

/** Validates what a PolicyDirReader read: its I/O issues reject the load; an empty directory is refused. */
export function policyFromRead(dir: string, read: PolicyDirRead): PolicyLoad {
  if (read.issues.length > 0) return { ok: false, issues: read.issues };
  if (read.files.length === 0) {
    // An empty directory is far more often a failed mount than a wish to unpublish every model.
    return { ok: false, issues: [{ file: '', line: 0, col: 0, path: '', message: 'no policy files (*.yaml, *.yml) found', code: 'io' }] };
  }
  return policyFromFiles(dir, read.files);
}

/** Validates policy file texts as one policy; pure, so the CLI's `validate` and tests need no directory. */
export function policyFromFiles(dir: string, files: readonly PolicyFileText[]): PolicyLoad {
  const byFile = (a: PolicyFileText, b: PolicyFileText): number => (a.file < b.file ? -1 : a.file > b.file ? 1 : 0);
  // The directory reader lists files in order already: one look instead of a sort of every file on every edit.
  const sorted = files.every((f, i) => i === 0 || byFile(files[i - 1] as PolicyFileText, f) < 0) ? files : [...files].sort(byFile);
  const issues: PolicyIssue[] = [];
  const declared: DeclaredDocument[] = [];
  let valid: ValidDocument[] = [];
  let brokenGateway = false;

  for (const { file, text } of sorted) {
    const checked = checkedFile(dir, file, text);
    for (const issue of checked.issues) issues.push(issue);
    for (const d of checked.declared) declared.push(d);
    for (const d of checked.valid) valid.push(d);
    if (checked.brokenGateway) brokenGateway = true;
  }

  // An edit of a clean policy that touched only plain Models and Consumers: proven clean by the index alone.
  const gatewayDoc = valid.find((d) => d.kind === 'Gateway');
  if (issues.length === 0 && cleanIndexes.get(dir)?.accepts(valid, gatewayDoc)) {
    cleanLoads.quick++;
    return { ok: true, policy: assemblePolicy(partsOf(dir, sorted, valid)) };
  }
  cleanIndexes.delete(dir);
  cleanLoads.checked++;

  const declarationIssues = checkDeclarations(declared);
  if (declarationIssues.length > 0) {
    issues.push(...declarationIssues);
    // Only the first of two same-named documents is judged further: its twin is already an issue, not a second model.
    const firstOfName = new Set<string>();
    valid = valid.filter((d) => {
      const key = d.kind === 'Gateway' ? 'Gateway' : `${d.kind}/${d.kind === 'Rollout' ? d.policy.model : d.policy.name}`;
      if (firstOfName.has(key)) return false;
      firstOfName.add(key);
      return true;
    });
  }
  const parts = partsOf(dir, sorted, valid);
  const gateway = parts.gateway?.policy ?? defaultGateway();
  const known = { ...declaredNames(declared), gatewayValid: !brokenGateway };
  issues.push(...checkReferences(valid, gateway, parts.gateway?.source, known), ...checkRollouts(valid, known), ...checkSplit(valid, gateway));

  if (issues.length > 0) return { ok: false, issues: dedupe(issues).sort(compareIssues) };
  rememberClean(dir, new CleanPolicyIndex(valid, gatewayDoc, gateway));
  return { ok: true, policy: assemblePolicy(parts) };
}

/**
 * The index of the last clean load of each directory, for the next edit of it (clean-edits.ts). Bounded as
 * checkedFiles is: `validate` of many directories in one process must not grow it without end.
 */
const cleanIndexes = new Map<string, CleanPolicyIndex>();
const MAX_CLEAN_INDEXES = 64;

function rememberClean(dir: string, index: CleanPolicyIndex): void {
  if (cleanIndexes.size >= MAX_CLEAN_INDEXES) cleanIndexes.clear();
  cleanIndexes.set(dir, index);
}

/** Loads since the process started that reached the cross-file checks, and clean ones the clean-edit index judged alone. */
const cleanLoads = { checked: 0, quick: 0 };

/** How loads were judged (for tests and benchmarks: an edit of one plain document should be `quick`). */
export function policyLoadCounts(): { readonly checked: number; readonly quick: number } {
  return { ...cleanLoads };
}

/** The valid documents by kind, in file order (the first Gateway), for assemblePolicy. */
function partsOf(dir: string, sorted: readonly PolicyFileText[], valid: readonly ValidDocument[]): PolicyParts & Required<Pick<PolicyParts, 'rollouts' | 'pipelines'>> {
  let gateway: PolicyParts['gateway'];
  const models: { policy: ModelPolicy; source: SourceDocument }[] = [];
  const consumers: { policy: ConsumerPolicy; source: SourceDocument }[] = [];
  const rollouts: { policy: RolloutPolicy; source: SourceDocument }[] = [];
  const pipelines: { policy: PipelinePolicy; source: SourceDocument }[] = [];
  for (const d of valid) {
    if (d.kind === 'Model') models.push({ policy: d.policy, source: d.source });
    else if (d.kind === 'Consumer') consumers.push({ policy: d.policy, source: d.source });
    else if (d.kind === 'Rollout') rollouts.push({ policy: d.policy, source: d.source });
    else if (d.kind === 'Pipeline') pipelines.push({ policy: d.policy, source: d.source });
    else gateway ??= { policy: d.policy, source: d.source };
  }
  return { dir, files: sorted.map((f) => f.file), gateway, models, consumers, rollouts, pipelines };
}

/** The names declared per kind that references may use (valid documents or not). */
function declaredNames(declared: readonly DeclaredDocument[]): { models: Set<string>; consumers: Set<string>; pipelines: Set<string> } {
  const names = { models: new Set<string>(), consumers: new Set<string>(), pipelines: new Set<string>() };
  for (const d of declared) {
    if (d.name === undefined) continue;
    if (d.kind === 'Model') names.models.add(d.name);
    else if (d.kind === 'Consumer') names.consumers.add(d.name);
    else if (d.kind === 'Pipeline') names.pipelines.add(d.name);
  }
  return names;
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
