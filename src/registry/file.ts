import { readFile, rename, stat, writeFile } from 'node:fs/promises';
import { LineCounter, isMap, isPair, isScalar, isSeq, parseDocument, type Document } from 'yaml';
import { z } from 'zod';
import { FlowgateError, errorMessage } from '../errors.js';
import { policyErrorMap } from '../policy/issues.js';
import { registrySnapshotFrom } from './snapshot.js';
import type { ModelVersion, RegisteredModel, RegistrySnapshot } from './types.js';

/**
 * A registry written down as a file, for `flowgate render --registry FILE` and golden tests: the same
 * RegistrySnapshot (and the same hash) MLflow would give for the same content, without an MLflow. JSON, or
 * YAML (JSON is YAML, so one parser reads both and reports line and column for either).
 *
 *   { "models": [ { "name": "fraud-detector", "aliases": { "champion": "1" },
 *                   "versions": [ { "version": "1", "tags": { "flowgate.address": "127.0.0.1:8001" } } ] } ] }
 */

const versionNumber = z
  .union([z.string(), z.number()])
  .transform((v) => String(v))
  .refine((v) => /^[1-9]\d*$/.test(v), { message: 'must be a version number like "1" or "12"' });
const stringRecord = z.record(z.string(), z.string()).default({});

const versionSchema = z.strictObject({
  version: versionNumber,
  status: z.enum(['READY', 'PENDING_REGISTRATION', 'FAILED_REGISTRATION']).default('READY'),
  stage: z.enum(['None', 'Staging', 'Production', 'Archived']).default('None'),
  /** Derived from the model's alias map when absent. */
  aliases: z.array(z.string().min(1)).optional(),
  tags: stringRecord,
  source: z.string().default(''),
  runId: z.string().default(''),
  createdAt: z.number().int().nonnegative().default(0),
  updatedAt: z.number().int().nonnegative().optional(),
});

const modelSchema = z.strictObject({
  name: z.string().min(1),
  description: z.string().default(''),
  tags: stringRecord,
  aliases: z.record(z.string().min(1), versionNumber).default({}),
  versions: z.array(versionSchema).default([]),
});

const registryFileSchema = z.strictObject({ models: z.array(modelSchema) });
type RegistryFileModel = z.infer<typeof modelSchema>;

/** One thing wrong with a registry file, at the line and column to edit. */
export interface RegistryFileIssue {
  readonly line: number;
  readonly col: number;
  /** Where inside the document, e.g. `models[0].versions[1].status`; '' for the document itself. */
  readonly path: string;
  readonly message: string;
}

/** A registry file that cannot be used, with every issue found in it. */
export class RegistryFileError extends FlowgateError {
  constructor(
    readonly file: string,
    readonly issues: readonly RegistryFileIssue[],
  ) {
    super('registry.file_invalid', issues.map((i) => `${file}:${i.line}:${i.col}: ${i.path === '' ? '' : `${i.path}: `}${i.message}`).join('\n'), file);
    this.name = 'RegistryFileError';
  }

  /** One line per issue, each already naming the file. */
  override toString(): string {
    return this.message;
  }
}

type Path = readonly PropertyKey[];

function pathText(path: Path): string {
  let out = '';
  for (const seg of path) {
    if (typeof seg === 'number') out += `[${seg}]`;
    else out += out === '' ? String(seg) : `.${String(seg)}`;
  }
  return out;
}

/** Line and column of `path` in the document (of its key when `key` is set), or of the nearest enclosing node. */
function locate(doc: Document, lines: LineCounter, path: Path, key?: string): { line: number; col: number } {
  const full = key === undefined ? path : [...path, key];
  for (let n = full.length; n >= 0; n--) {
    const parent = n === 0 ? doc.contents : doc.getIn(full.slice(0, n - 1), true);
    let offset: number | undefined;
    if (n === 0) offset = doc.contents?.range?.[0];
    else if (isMap(parent)) {
      const pair = parent.items.find((p) => isPair(p) && isScalar(p.key) && String(p.key.value) === String(full[n - 1]));
      // The key of a pair points at what the person typed, also when its value is missing or empty.
      const node = pair && (key !== undefined && n === full.length ? pair.key : (pair.value ?? pair.key));
      offset = (node as { range?: [number, number, number] | null } | null | undefined)?.range?.[0];
    } else if (isSeq(parent)) {
      const item = parent.items[Number(full[n - 1])];
      offset = (item as { range?: [number, number, number] | null } | null | undefined)?.range?.[0];
    }
    if (offset !== undefined) return lines.linePos(offset);
  }
  return { line: 1, col: 1 };
}

/** The snapshot written in `text` (JSON or YAML); `file` names it in errors. Throws RegistryFileError. */
export function registryFromText(text: string, file: string, fetchedAt: number = Date.now()): RegistrySnapshot {
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, uniqueKeys: true, prettyErrors: false });
  if (doc.errors.length > 0) {
    throw new RegistryFileError(
      file,
      doc.errors.map((e) => ({ ...lines.linePos(e.pos[0]), path: '', message: e.message.split('\n')[0] ?? e.message })),
    );
  }
  const issueAt = (path: Path, message: string, key?: string): RegistryFileIssue => ({
    ...locate(doc, lines, path, key),
    path: pathText(key === undefined ? path : [...path, key]),
    message,
  });

  const parsed = registryFileSchema.safeParse(doc.toJS(), { error: policyErrorMap });
  if (!parsed.success) {
    const issues: RegistryFileIssue[] = [];
    for (const iss of parsed.error.issues) {
      // One issue per unknown key, each placed on the key itself.
      if (iss.code === 'unrecognized_keys') for (const k of iss.keys) issues.push(issueAt(iss.path, `unknown key '${k}'`, k));
      else issues.push(issueAt(iss.path, iss.message));
    }
    throw new RegistryFileError(file, issues);
  }

  const issues: RegistryFileIssue[] = [];
  const models: RegisteredModel[] = [];
  const seen = new Set<string>();
  parsed.data.models.forEach((m, i) => {
    if (seen.has(m.name)) issues.push(issueAt(['models', i, 'name'], `model ${JSON.stringify(m.name)} is listed twice`));
    seen.add(m.name);
    models.push(toModel(m, ['models', i], issues, issueAt));
  });
  if (issues.length > 0) throw new RegistryFileError(file, issues);
  return registrySnapshotFrom(models, fetchedAt);
}

/** Checks one model's versions and aliases against each other and builds it; problems go to `issues`. */
function toModel(
  m: RegistryFileModel,
  at: Path,
  issues: RegistryFileIssue[],
  issueAt: (path: Path, message: string, key?: string) => RegistryFileIssue,
): RegisteredModel {
  const numbers = new Set<string>();
  m.versions.forEach((v, j) => {
    if (numbers.has(v.version)) issues.push(issueAt([...at, 'versions', j, 'version'], `version ${v.version} of ${JSON.stringify(m.name)} is listed twice`));
    numbers.add(v.version);
  });
  for (const [alias, version] of Object.entries(m.aliases)) {
    if (!numbers.has(version)) {
      issues.push(issueAt([...at, 'aliases', alias], `alias '${alias}' points at version ${version}, which ${JSON.stringify(m.name)} does not list under versions`));
    }
  }
  // Version-level aliases may repeat the model's map but never contradict it or each other.
  const aliases: Record<string, string> = { ...m.aliases };
  m.versions.forEach((v, j) => {
    (v.aliases ?? []).forEach((alias, k) => {
      const claimed = aliases[alias];
      if (claimed !== undefined && claimed !== v.version) {
        issues.push(issueAt([...at, 'versions', j, 'aliases', k], `alias '${alias}' is on version ${v.version} here but on version ${claimed} elsewhere in ${JSON.stringify(m.name)}`));
      }
      aliases[alias] ??= v.version;
    });
  });
  const versions = m.versions.map(
    (v): ModelVersion => ({
      name: m.name,
      version: v.version,
      status: v.status,
      stage: v.stage,
      aliases: [],
      tags: v.tags,
      source: v.source,
      runId: v.runId,
      createdAt: v.createdAt,
      updatedAt: v.updatedAt ?? v.createdAt,
    }),
  );
  // registrySnapshotFrom derives each version's aliases from this map.
  return { name: m.name, description: m.description, tags: m.tags, aliases, versions };
}

/** Reads a registry file (JSON or YAML) into a snapshot stamped with the file's modification time. */
export async function loadRegistryFile(path: string): Promise<RegistrySnapshot> {
  let text: string;
  let mtimeMs: number;
  try {
    [text, mtimeMs] = await Promise.all([readFile(path, 'utf8'), stat(path).then((s) => Math.round(s.mtimeMs))]);
  } catch (err) {
    throw new FlowgateError('registry.file_unreadable', `cannot read the registry file: ${errorMessage(err)}`, path, { cause: err });
  }
  return registryFromText(text, path, mtimeMs);
}

/** A snapshot in the registry-file format (JSON), which registryFromText reads back to an equal snapshot. */
export function registryFileText(snapshot: RegistrySnapshot): string {
  const models = [...snapshot.models.values()].map((m) => ({
    name: m.name,
    description: m.description,
    tags: m.tags,
    aliases: m.aliases,
    versions: m.versions.map((v) => ({
      version: v.version,
      status: v.status,
      stage: v.stage,
      tags: v.tags,
      source: v.source,
      runId: v.runId,
      createdAt: v.createdAt,
      updatedAt: v.updatedAt,
    })),
  }));
  return `${JSON.stringify({ models }, null, 1)}\n`;
}

/** Writes the snapshot to `path` atomically (a reader never sees half a file). */
export async function saveRegistryFile(path: string, snapshot: RegistrySnapshot): Promise<void> {
  const tmp = `${path}.${process.pid}.tmp`;
  await writeFile(tmp, registryFileText(snapshot));
  await rename(tmp, path);
}
