import { createHash } from 'node:crypto';
import { pathText, type PolicyIssue, type PolicyPath } from './issues.js';
import { GatewaySchema, type ConsumerPolicy, type GatewayPolicy, type ModelPolicy, type PipelinePolicy, type PolicyKind, type RolloutPolicy } from './schema/index.js';
import type { SourceDocument, SourcePosition } from './source.js';

/**
 * Policy: what the SREs' files say, validated, immutable, with a content hash and the way back from any
 * document (and any path inside it) to the line it was written on.
 */

export interface Policy {
  /** The directory as given to the loader. */
  readonly dir: string;
  /** Files read, relative to `dir`, '/'-separated, sorted. */
  readonly files: readonly string[];
  /** sha256 of the normalized policy: equal for directories with the same meaning, whatever the file layout, key order or comments. */
  readonly hash: string;
  /** The Gateway document, or the schema's defaults when there is none. */
  readonly gateway: GatewayPolicy;
  /** By name, in name order. */
  readonly models: ReadonlyMap<string, ModelPolicy>;
  readonly consumers: ReadonlyMap<string, ConsumerPolicy>;
  /** Rollouts by the Model they roll out, in model order. */
  readonly rollouts: ReadonlyMap<string, RolloutPolicy>;
  /** By name, in name order. */
  readonly pipelines: ReadonlyMap<string, PipelinePolicy>;
  /**
   * Where `path` inside the named document was written (the Gateway's name is ignored). A path that is not in
   * the file resolves to the mapping that would hold it. A Rollout is named by its model. Undefined for a document that was not written (the
   * default Gateway) or a name that is not in the policy.
   */
  locate(kind: PolicyKind, name: string, path?: PolicyPath): SourcePosition | undefined;
}

/** An issue about a policy document, placed by `policy.locate`, for stages after the loader (e.g. the IR). */
export function policyIssue(policy: Policy, kind: PolicyKind, name: string, path: PolicyPath, message: string, code: PolicyIssue['code'] = 'reference'): PolicyIssue {
  const at = policy.locate(kind, name, path) ?? { file: '', line: 0, col: 0 };
  return { ...at, path: pathText(path), message, code };
}

/** The Gateway a policy without a Gateway document gets: every schema default. */
export function defaultGateway(): GatewayPolicy {
  return GatewaySchema.parse({ kind: 'Gateway' });
}

/** JSON with object keys sorted at every level, so the text depends only on content. */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== 'object') return JSON.stringify(value) ?? 'null';
  if (Array.isArray(value)) return `[${value.map((v: unknown) => canonicalJson(v === undefined ? null : v)).join(',')}]`;
  const entries = Object.entries(value as Record<string, unknown>)
    .filter(([, v]) => v !== undefined)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
}

/**
 * The canonical JSON of each (deep-frozen) document, kept while the document is: an unchanged file keeps its
 * document objects from load to load (load.ts), so the policy hash of an edit of one file in a thousand
 * writes one document's text, not a thousand. Spliced into the hash text at placeholders, which gives exactly
 * canonicalJson of the whole (an array's text is its elements' texts joined by commas).
 */
const documentTexts = new WeakMap<object, string>();
const SLOT = { gateway: '\u0000gateway', models: '\u0000models', consumers: '\u0000consumers', rollouts: '\u0000rollouts', pipelines: '\u0000pipelines' } as const;

function documentJson(doc: object): string {
  let text = documentTexts.get(doc);
  if (text === undefined) {
    text = canonicalJson(doc);
    if (Object.isFrozen(doc)) documentTexts.set(doc, text);
  }
  return text;
}

const SLOTS = new RegExp(Object.values(SLOT).map((v) => JSON.stringify(v).replace(/\\/g, '\\\\')).join('|'), 'g');

const documentsJson = (docs: readonly object[]): string => `[${docs.map(documentJson).join(',')}]`;

/** Makes accidental mutation by a later stage throw instead of silently changing the served policy. */
function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value as Record<string, unknown>)) deepFreeze(v);
  }
  return value;
}

/** `items` sorted by `keyOf` (code-unit order), sorted in place only when they are not in order already (the loader's usually are). */
function inOrder<T>(items: T[], keyOf: (item: T) => string): T[] {
  for (let i = 1; i < items.length; i++) {
    if (keyOf(items[i - 1] as T) > keyOf(items[i] as T)) {
      return items.sort((a, b) => (keyOf(a) < keyOf(b) ? -1 : keyOf(a) > keyOf(b) ? 1 : 0));
    }
  }
  return items;
}

export interface PolicyParts {
  readonly dir: string;
  readonly files: readonly string[];
  readonly gateway: { readonly policy: GatewayPolicy; readonly source: SourceDocument } | undefined;
  readonly models: readonly { readonly policy: ModelPolicy; readonly source: SourceDocument }[];
  readonly consumers: readonly { readonly policy: ConsumerPolicy; readonly source: SourceDocument }[];
  readonly rollouts?: readonly { readonly policy: RolloutPolicy; readonly source: SourceDocument }[];
  readonly pipelines?: readonly { readonly policy: PipelinePolicy; readonly source: SourceDocument }[];
}

/** Assembles the immutable Policy from validated documents; names must already be unique. */
export function assemblePolicy(parts: PolicyParts): Policy {
  const byName = <T extends { name: string }>(docs: readonly { policy: T }[]): T[] => inOrder(docs.map((d) => d.policy), (d) => d.name);
  const gateway = deepFreeze(parts.gateway?.policy ?? defaultGateway());
  const models = deepFreeze(byName(parts.models));
  const consumers = deepFreeze(byName(parts.consumers));
  const rollouts = deepFreeze(inOrder((parts.rollouts ?? []).map((d) => d.policy), (r) => r.model));
  const pipelines = deepFreeze(byName(parts.pipelines ?? []));
  // Versioned, so a change in what the hash covers is a change of every hash rather than a silent collision.
  // Pipelines are hashed only when there are some, so a policy without any keeps the hash it always had.
  const hash = createHash('sha256')
    // Rollouts and pipelines join the hash only when there are some, so policies without them keep their hashes.
    .update(
      canonicalJson({ format: 'flowgate.policy/v1', gateway: SLOT.gateway, models: SLOT.models, consumers: SLOT.consumers, rollouts: rollouts.length > 0 ? SLOT.rollouts : undefined, ...(pipelines.length > 0 && { pipelines: SLOT.pipelines }) })
        // One pass over the skeleton: the documents' texts spliced in are never searched for slots.
        .replace(SLOTS, (slot) =>
          slot === JSON.stringify(SLOT.gateway)
            ? documentJson(gateway)
            : documentsJson(slot === JSON.stringify(SLOT.models) ? models : slot === JSON.stringify(SLOT.consumers) ? consumers : slot === JSON.stringify(SLOT.rollouts) ? rollouts : pipelines),
        ),
    )
    .digest('hex');

  // Made on the first locate: only an issue found after the loader asks, and an edit should not pay for it.
  let sources: Map<string, SourceDocument> | undefined;
  const sourceOf = (kind: PolicyKind, name: string): SourceDocument | undefined => {
    if (!sources) {
      sources = new Map();
      if (parts.gateway) sources.set('Gateway/', parts.gateway.source);
      for (const m of parts.models) sources.set(`Model/${m.policy.name}`, m.source);
      for (const c of parts.consumers) sources.set(`Consumer/${c.policy.name}`, c.source);
      for (const r of parts.rollouts ?? []) sources.set(`Rollout/${r.policy.model}`, r.source);
      for (const p of parts.pipelines ?? []) sources.set(`Pipeline/${p.policy.name}`, p.source);
    }
    return sources.get(kind === 'Gateway' ? 'Gateway/' : `${kind}/${name}`);
  };

  const policy: Policy = {
    dir: parts.dir,
    files: Object.freeze(inOrder([...parts.files], (f) => f)),
    hash,
    gateway,
    models: new Map(models.map((m) => [m.name, m])),
    consumers: new Map(consumers.map((c) => [c.name, c])),
    rollouts: new Map(rollouts.map((r) => [r.model, r])),
    pipelines: new Map(pipelines.map((p) => [p.name, p])),
    locate(kind, name, path = []) {
      return sourceOf(kind, name)?.locate(path);
    },
  };
  return Object.freeze(policy);
}
