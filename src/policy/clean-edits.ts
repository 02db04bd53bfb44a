import { CREDENTIAL_HEADERS } from '../contract/filter-wire.js';
import type { ValidDocument } from './checks.js';
import { modelRoutes, pipelineRoutes } from './routes.js';
import type { ConsumerPolicy, GatewayPolicy, ModelPolicy } from './schema/index.js';

/**
 * An edit of a policy that passed every check, proven clean without judging again the documents it did not
 * touch. The cross-file checks (checks.ts, llm-checks.ts, split-checks.ts) walk every document: at a thousand
 * files that is most of an edit's load. This index answers first, with one of two verdicts: "the checks
 * would report nothing" (then they are skipped) or "not sure" (then they run, as before). It never words an
 * issue, so every message and its "first defined at" still comes from the checks.
 *
 * It decides only when every document the edit adds or removes is a Consumer or a Model without an `llm` or
 * `proxyless` block (what an edit touches most) and the Gateway document is the same object as before;
 * anything else runs the checks. Documents are compared by object: the loader keeps an unchanged file's.
 */

/** At most this share of the documents changed for the index to decide; a larger change runs the checks. */
const MAX_CHANGED_SHARE = 0.25;

/** What one document puts in the policy: keys that must be unique across it, and names it needs declared. */
interface Facts {
  readonly unique: readonly string[];
  readonly needs: readonly string[];
}

/**
 * Keys, by what they stand for. A declared name is counted in its namespace (Models and Pipelines share one,
 * as checkDeclarations says); a route claim only on a listener that exists, as checkReferences claims it.
 */
const key = {
  modelName: (name: string) => `n\u0000Model/${name}`,
  consumerName: (name: string) => `n\u0000Consumer/${name}`,
  rolloutOf: (model: string) => `n\u0000Rollout/${model}`,
  gateway: 'n\u0000Gateway',
  route: (listener: string, host: string, pathPrefix: string) => `r\u0000${listener}\u0000${host}\u0000${pathPrefix}`,
  proxylessTarget: (target: string) => `t\u0000${target}`,
  apiKeyId: (id: string) => `k\u0000${id}`,
  apiKeyDigest: (sha256: string) => `d\u0000${sha256}`,
  jwtSubject: (issuer: string, subject: string) => `s\u0000${issuer}\u0000${subject}`,
  /** A Consumer's limit on a Model or Pipeline: needs the name declared. */
  limitOn: (model: string) => `m\u0000${model}`,
  /** A Model or Pipeline's access list naming a Consumer. */
  accessBy: (consumer: string) => `c\u0000${consumer}`,
  /** A Pipeline step or a Rollout reads more of the Model than its name (listeners, traffic): its edit runs the checks. */
  stepOn: (model: string) => `p\u0000${model}`,
  rolloutOn: (model: string) => `o\u0000${model}`,
};

/** A Model or Consumer whose every cross-file rule this index knows; the other documents are judged by the checks. */
function isSimple(d: ValidDocument): d is Extract<ValidDocument, { kind: 'Model' | 'Consumer' }> {
  return d.kind === 'Consumer' || (d.kind === 'Model' && d.policy.llm === undefined && d.policy.proxyless === undefined);
}

function factsOf(d: ValidDocument, gateway: GatewayPolicy, listeners: ReadonlySet<string>): Facts {
  const unique: string[] = [];
  const needs: string[] = [];
  const claimRoutes = (routes: readonly { listener: string; host: string; pathPrefix: string }[]): void => {
    for (const r of routes) if (listeners.has(r.listener)) unique.push(key.route(r.listener, r.host, r.pathPrefix));
  };
  switch (d.kind) {
    case 'Gateway':
      unique.push(key.gateway);
      break;
    case 'Model': {
      const m = d.policy;
      unique.push(key.modelName(m.name));
      claimRoutes(modelRoutes(m, gateway));
      if (m.proxyless) unique.push(key.proxylessTarget(m.proxyless.target));
      for (const c of m.access?.consumers ?? []) needs.push(key.accessBy(c));
      for (const rule of m.access?.versions ?? []) for (const c of rule.consumers) needs.push(key.accessBy(c));
      break;
    }
    case 'Pipeline': {
      const p = d.policy;
      unique.push(key.modelName(p.name));
      claimRoutes(pipelineRoutes(p, gateway));
      for (const s of p.steps) needs.push(key.stepOn(s.model));
      for (const c of p.access?.consumers ?? []) needs.push(key.accessBy(c));
      break;
    }
    case 'Rollout':
      unique.push(key.rolloutOf(d.policy.model));
      needs.push(key.rolloutOn(d.policy.model));
      break;
    case 'Consumer': {
      const c = d.policy;
      unique.push(key.consumerName(c.name));
      for (const k of c.apiKeys) unique.push(key.apiKeyId(k.id), key.apiKeyDigest(k.sha256));
      if (c.jwt) unique.push(key.jwtSubject(c.jwt.issuer, c.jwt.subject));
      for (const limit of [...c.rateLimits, ...c.tokenQuotas]) if (limit.model !== undefined) needs.push(key.limitOn(limit.model));
      break;
    }
  }
  return { unique, needs };
}

const bump = (counts: Map<string, number>, k: string, by: number): void => {
  const n = (counts.get(k) ?? 0) + by;
  if (n === 0) counts.delete(k);
  else counts.set(k, n);
};

export class CleanPolicyIndex {
  /** Each document of the clean policy, with its facts (kept: a removed document's are needed again). */
  private readonly docs = new Map<ValidDocument, Facts>();
  private readonly unique = new Map<string, number>();
  private readonly needs = new Map<string, number>();
  private readonly listeners: ReadonlySet<string>;
  private readonly issuers: ReadonlySet<string>;
  private readonly proxyless: ReadonlySet<string>;
  /** Set once a verdict was "not sure": the counts may be half updated, so the index is not asked again. */
  private spent = false;

  /** The index of documents the checks have just found clean, with their Gateway (the document, or undefined for the default). */
  constructor(
    docs: readonly ValidDocument[],
    private readonly gatewayDoc: ValidDocument | undefined,
    private readonly gateway: GatewayPolicy,
  ) {
    this.listeners = new Set(gateway.listeners.map((l) => l.name));
    this.issuers = new Set(gateway.auth.jwt.map((j) => j.name));
    // Only documents the index does not decide for carry `proxyless`, so an edit it accepts never changes this set.
    this.proxyless = new Set(docs.flatMap((d) => (d.kind === 'Model' && d.policy.proxyless ? [d.policy.name] : [])));
    for (const d of docs) this.add(d);
  }

  /**
   * True when the checks would find nothing in `docs` (every document passed its schema, in file order), the
   * index then describing `docs`; false when not sure, after which the index must not be asked again.
   */
  accepts(docs: readonly ValidDocument[], gatewayDoc: ValidDocument | undefined): boolean {
    if (this.spent || gatewayDoc !== this.gatewayDoc) return this.notSure();
    const now = new Set(docs);
    const added = docs.filter((d) => !this.docs.has(d));
    const removed = [...this.docs.keys()].filter((d) => !now.has(d));
    if (added.length + removed.length > Math.max(2, this.docs.size * MAX_CHANGED_SHARE)) return this.notSure();
    if (!added.every(isSimple) || !removed.every(isSimple)) return this.notSure();

    for (const d of removed) this.remove(d);
    const addedFacts = added.map((d) => this.add(d));
    // The policy before had every key once, so a key counted twice now is an added document's.
    if (addedFacts.some((f) => f.unique.some((k) => (this.unique.get(k) ?? 0) > 1))) return this.notSure();
    for (const d of added) if (!this.judge(d)) return this.notSure();
    // A name gone that another document needs: the checks say which and where.
    for (const d of removed) if (!this.stillDeclared(d)) return this.notSure();
    return true;
  }

  private notSure(): false {
    this.spent = true;
    return false;
  }

  private add(d: ValidDocument): Facts {
    const f = factsOf(d, this.gateway, this.listeners);
    for (const k of f.unique) bump(this.unique, k, 1);
    for (const k of f.needs) bump(this.needs, k, 1);
    this.docs.set(d, f);
    return f;
  }

  private remove(d: ValidDocument): void {
    const f = this.docs.get(d) as Facts;
    for (const k of f.unique) bump(this.unique, k, -1);
    for (const k of f.needs) bump(this.needs, k, -1);
    this.docs.delete(d);
  }

  /** checkReferences, checkRollouts and checkSplit's rules for one added Model or Consumer. */
  private judge(d: Extract<ValidDocument, { kind: 'Model' | 'Consumer' }>): boolean {
    return d.kind === 'Model' ? this.judgeModel(d.policy) : this.judgeConsumer(d.policy);
  }

  private judgeModel(m: ModelPolicy): boolean {
    // A Pipeline step or a Rollout on it reads its listeners or traffic: the checks judge those.
    if (this.needs.has(key.stepOn(m.name)) || this.needs.has(key.rolloutOn(m.name))) return false;
    if (m.routes?.some((r) => !this.listeners.has(r.listener))) return false;
    const consumers = [...(m.access?.consumers ?? []), ...(m.access?.versions ?? []).flatMap((rule) => rule.consumers)];
    if (!consumers.every((c) => this.unique.has(key.consumerName(c)))) return false;
    const sticky = m.traffic?.sticky?.header;
    const credentials: readonly string[] = CREDENTIAL_HEADERS;
    return !(this.gateway.traffic?.split === 'endpoints' && sticky !== undefined && credentials.includes(sticky.toLowerCase()));
  }

  private judgeConsumer(c: ConsumerPolicy): boolean {
    if (c.jwt && !this.issuers.has(c.jwt.issuer)) return false;
    for (const limit of [...c.rateLimits, ...c.tokenQuotas]) {
      if (limit.model === undefined) continue;
      if (!this.unique.has(key.modelName(limit.model)) || this.proxyless.has(limit.model)) return false;
    }
    return true;
  }

  /** False when a removed document's name is no longer declared while another document still needs it. */
  private stillDeclared(d: Extract<ValidDocument, { kind: 'Model' | 'Consumer' }>): boolean {
    const name = d.policy.name;
    if (d.kind === 'Consumer') return this.unique.has(key.consumerName(name)) || !this.needs.has(key.accessBy(name));
    if (this.unique.has(key.modelName(name))) return true;
    return !this.needs.has(key.limitOn(name)) && !this.needs.has(key.stepOn(name)) && !this.needs.has(key.rolloutOn(name));
  }
}
