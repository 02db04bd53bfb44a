import { createHash } from 'node:crypto';
import type { ModelVersion, RegisteredModel, RegistryPrompt, RegistrySnapshot } from './types.js';

/**
 * The one place a RegistrySnapshot is assembled, whether its models came from MLflow or from a file: the
 * same ordering, the same alias bookkeeping and the same hash, so equal content always means equal hashes.
 */

/** Orders MLflow version numbers as numbers ("2" before "10"); anything non-numeric sorts after, by text. */
export function compareVersionNumbers(a: string, b: string): number {
  const x = Number(a);
  const y = Number(b);
  const xNum = a !== '' && Number.isFinite(x);
  const yNum = b !== '' && Number.isFinite(y);
  if (xNum && yNum && x !== y) return x - y;
  if (xNum !== yNum) return xNum ? -1 : 1;
  return a < b ? -1 : a > b ? 1 : 0;
}

const byText = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

/** A copy of a string record with its keys in sorted order, so its JSON text depends only on content. */
function sortedRecord(record: Readonly<Record<string, string>>): Readonly<Record<string, string>> {
  return Object.freeze(Object.fromEntries(Object.entries(record).sort(([a], [b]) => byText(a, b))));
}

/**
 * One model in canonical form. The model-level alias map is the source of truth (MLflow moves an alias
 * atomically there); an alias a version reports that the map lacks is added, one that contradicts the map
 * (read a moment apart from it, while the alias moved) is dropped. Each version's aliases are then derived
 * from the map, so the two views can never disagree.
 */
export function normalizeModel(model: RegisteredModel): RegisteredModel {
  const versions = [...model.versions].sort((a, b) => compareVersionNumbers(a.version, b.version));
  const aliases: Record<string, string> = { ...model.aliases };
  for (const v of versions) for (const alias of v.aliases) aliases[alias] ??= v.version;
  const aliasesOf = new Map<string, string[]>();
  for (const [alias, version] of Object.entries(aliases)) aliasesOf.set(version, [...(aliasesOf.get(version) ?? []), alias]);
  return Object.freeze({
    name: model.name,
    description: model.description,
    tags: sortedRecord(model.tags),
    aliases: sortedRecord(aliases),
    versions: Object.freeze(
      versions.map(
        (v): ModelVersion =>
          Object.freeze({
            name: model.name,
            version: v.version,
            status: v.status,
            stage: v.stage,
            aliases: Object.freeze([...(aliasesOf.get(v.version) ?? [])].sort(byText)),
            tags: sortedRecord(v.tags),
            source: v.source,
            runId: v.runId,
            createdAt: v.createdAt,
            updatedAt: v.updatedAt,
          }),
      ),
    ),
  });
}

/** The content hash of normalized models (sorted by name): sha256 hex over every field, fetch time excluded. */
export function registryHash(models: readonly RegisteredModel[]): string {
  // Objects are built with a fixed key order and sorted records, so JSON.stringify is canonical here.
  // Versioned, so a change in what the hash covers changes every hash rather than colliding silently.
  return createHash('sha256')
    .update(JSON.stringify({ format: 'flowgate.registry/v1', models }))
    .digest('hex');
}

/** MLflow's tags of the Prompt Registry (mlflow/prompt/constants.py). */
export const PROMPT_TAG = 'mlflow.prompt.is_prompt';
export const PROMPT_TEXT_TAG = 'mlflow.prompt.text';
export const PROMPT_TYPE_TAG = '_mlflow_prompt_type';

/** Whether a registered model is a prompt of MLflow's Prompt Registry. */
export function isPromptModel(model: { readonly tags: Readonly<Record<string, string>> }): boolean {
  return (model.tags[PROMPT_TAG] ?? '').toLowerCase() === 'true';
}

/** A prompt model read as a prompt: its READY versions that carry a template. */
function promptOf(model: RegisteredModel): RegistryPrompt {
  const versions = model.versions
    .filter((v) => v.status === 'READY' && v.tags[PROMPT_TEXT_TAG] !== undefined)
    .map((v) => Object.freeze({ version: v.version, type: v.tags[PROMPT_TYPE_TAG] === 'chat' ? ('chat' as const) : ('text' as const), template: v.tags[PROMPT_TEXT_TAG] ?? '' }));
  return Object.freeze({ name: model.name, aliases: model.aliases, versions: Object.freeze(versions) });
}

/** Builds the immutable snapshot of `models` (any order, any alias bookkeeping) fetched at `fetchedAt`. */
export function registrySnapshotFrom(models: readonly RegisteredModel[], fetchedAt: number = Date.now()): RegistrySnapshot {
  const normalized = models.map(canonicalModel).sort((a, b) => byText(a.name, b.name));
  return Object.freeze({
    fetchedAt,
    hash: hashOfTexts(normalized.map(canonicalText)),
    models: new Map(normalized.map((m) => [m.name, m])),
    prompts: new Map(normalized.filter(isPromptModel).map((m) => [m.name, promptOf(m)])),
  });
}

/** The JSON text of each canonical model (what the registry hash covers). */
const canonicalTexts = new WeakMap<RegisteredModel, string>();
/**
 * The canonical object last made for each model name (an unchanged model keeps it from snapshot to snapshot),
 * with the model as it was given the last time it was made or found again.
 */
const lastCanonical = new Map<string, { readonly given: RegisteredModel; readonly canonical: RegisteredModel }>();
const MAX_REMEMBERED = 100_000;

function canonicalText(model: RegisteredModel): string {
  let text = canonicalTexts.get(model);
  if (text === undefined) {
    text = JSON.stringify(model);
    canonicalTexts.set(model, text);
  }
  return text;
}

/**
 * normalizeModel, returning the very object of the previous snapshot when the model did not change (or when
 * it is given one back): what the IR builds from a model is then reused by identity, so a poll or a webhook
 * that changes one model costs one model's rebuild.
 */
function canonicalModel(model: RegisteredModel): RegisteredModel {
  if (canonicalTexts.has(model)) return model;
  // A poll hands in new objects for every model, nearly all equal to the last poll's: compared as data first,
  // without normalizing, sorting or printing them (at 1,000 models that was most of a registry change's
  // time to publish).
  const seen = lastCanonical.get(model.name);
  if (seen && sameData(seen.given, model)) return seen.canonical;
  const normalized = normalizeModel(model);
  const text = canonicalText(normalized);
  const last = lastCanonical.get(normalized.name)?.canonical;
  const canonical = last && canonicalTexts.get(last) === text ? last : normalized;
  if (lastCanonical.size >= MAX_REMEMBERED) lastCanonical.clear();
  lastCanonical.set(normalized.name, { given: model, canonical });
  return canonical;
}

/** Deep equality of JSON-like data (strings, numbers, booleans, null, arrays, plain records), key order aside. */
function sameData(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  if (Array.isArray(a)) {
    if (!Array.isArray(b) || a.length !== b.length) return false;
    for (let i = 0; i < a.length; i++) if (!sameData(a[i], b[i])) return false;
    return true;
  }
  if (Array.isArray(b)) return false;
  const x = a as Record<string, unknown>;
  const y = b as Record<string, unknown>;
  let keys = 0;
  for (const k in x) {
    if (!Object.hasOwn(x, k)) continue;
    keys++;
    if (!Object.hasOwn(y, k) || !sameData(x[k], y[k])) return false;
  }
  for (const k in y) if (Object.hasOwn(y, k)) keys--;
  return keys === 0;
}

function hashOfTexts(models: readonly string[]): string {
  // The same text as JSON.stringify({ format, models }) in registryHash, assembled from each model's own.
  const h = createHash('sha256').update('{"format":"flowgate.registry/v1","models":[');
  models.forEach((text, i) => h.update(i === 0 ? text : `,${text}`));
  return h.update(']}').digest('hex');
}
