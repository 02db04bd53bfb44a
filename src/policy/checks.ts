import { isIP } from 'node:net';
import { didYouMean, type PolicyIssue, type PolicyPath } from './issues.js';
import { checkLlm } from './llm-checks.js';
import { modelRoutes, pipelineRoutes, type ModelRoute } from './routes.js';
import type { ConsumerPolicy, GatewayPolicy, ModelPolicy, PipelinePolicy, PolicyKind, RolloutPolicy } from './schema/index.js';
import type { SourceDocument, SourcePosition } from './source.js';

/**
 * Checks that span documents: unique names, at most one Gateway, references that resolve, routes and ports
 * that are claimed once. Each issue points at the second of two clashing things and says where the first is.
 * An edit of plain Models and Consumers in a clean policy is judged by clean-edits.ts instead: a rule added
 * here (or in llm-checks.ts, split-checks.ts) is taught there too, or makes it say "not sure" for what it
 * concerns (its fuzz test compares the two on random edits).
 */

/** A document whose kind is known, with the name it declares (read before the schema, so a broken doc still counts). */
export interface DeclaredDocument {
  readonly kind: PolicyKind;
  readonly name: string | undefined;
  readonly source: SourceDocument;
}

export type ValidDocument =
  | { readonly kind: 'Gateway'; readonly source: SourceDocument; readonly policy: GatewayPolicy }
  | { readonly kind: 'Model'; readonly source: SourceDocument; readonly policy: ModelPolicy }
  | { readonly kind: 'Consumer'; readonly source: SourceDocument; readonly policy: ConsumerPolicy }
  | { readonly kind: 'Rollout'; readonly source: SourceDocument; readonly policy: RolloutPolicy }
  | { readonly kind: 'Pipeline'; readonly source: SourceDocument; readonly policy: PipelinePolicy };

/** `models.yaml:3:7`, for "first defined at" tails. */
function where(p: SourcePosition): string {
  return `${p.file}:${p.line}:${p.col}`;
}

/**
 * Where the first of two clashing things was written, located only when a second one is reported: every
 * document registers its names and routes on every load, and a clash is rare.
 */
interface Place {
  readonly src: SourceDocument;
  readonly path: PolicyPath;
}

const whereAt = (p: Place): string => where(p.src.locate(p.path));

/** Duplicate names per kind and a second Gateway; `declared` must be in file order. */
export function checkDeclarations(declared: readonly DeclaredDocument[]): PolicyIssue[] {
  const issues: PolicyIssue[] = [];
  let gateway: Place | undefined;
  const firstByName = new Map<string, { kind: PolicyKind; at: Place }>();
  for (const d of declared) {
    if (d.kind === 'Gateway') {
      if (gateway) issues.push(d.source.issue(['kind'], `a second Gateway document (the first is at ${whereAt(gateway)}); a policy has at most one`, 'duplicate'));
      else gateway = { src: d.source, path: ['kind'] };
      continue;
    }
    if (d.name === undefined) continue;
    // Models and Pipelines share one namespace: both are what a route, a limit or an audit line names.
    const key = `${d.kind === 'Pipeline' ? 'Model' : d.kind}/${d.name}`;
    const first = firstByName.get(key);
    const nameKey = d.kind === 'Rollout' ? 'model' : 'name';
    if (first) {
      const message =
        d.kind === 'Rollout'
          ? `a second Rollout of model '${d.name}'; a model has at most one (first defined at ${whereAt(first.at)})`
          : first.kind === d.kind
            ? `duplicate ${d.kind} name '${d.name}' (first defined at ${whereAt(first.at)})`
            : `the name '${d.name}' is already used by a ${first.kind} (${whereAt(first.at)}); Models and Pipelines share one namespace`;
      issues.push(d.source.issue([nameKey], message, 'duplicate'));
    } else firstByName.set(key, { kind: d.kind, at: { src: d.source, path: [nameKey] } });
  }
  return issues;
}

/** Names that references may use: from every document that declares one, valid or not, so one broken doc does not cascade. */
export interface KnownNames {
  readonly models: ReadonlySet<string>;
  readonly consumers: ReadonlySet<string>;
  readonly pipelines?: ReadonlySet<string>;
  /** False when the Gateway document itself is invalid: listener and issuer references are then not judged. */
  readonly gatewayValid: boolean;
}

/** Every cross-document rule of docs/policy.md over the documents that passed the schema. */
export function checkReferences(docs: readonly ValidDocument[], gateway: GatewayPolicy, gatewaySource: SourceDocument | undefined, known: KnownNames): PolicyIssue[] {
  const issues: PolicyIssue[] = [];
  if (gatewaySource) issues.push(...checkGateway(gateway, gatewaySource));
  const listeners = gateway.listeners.map((l) => l.name);
  const issuers = gateway.auth.jwt.map((j) => j.name);
  // One entry per claimed route (the place of the first claim is made only when a second one is reported).
  const claims = new Map<string, { readonly owner: string; readonly kind: 'Model' | 'Pipeline'; readonly src: SourceDocument; readonly routeIndex: number | undefined }>();
  const keyIds = new Map<string, Place>();
  const keyDigests = new Map<string, { consumer: string; at: Place }>();
  const subjects = new Map<string, { consumer: string; at: Place }>();
  const targets = new Map<string, { model: string; at: Place }>();
  const proxyless = new Set(docs.flatMap((d) => (d.kind === 'Model' && d.policy.proxyless ? [d.policy.name] : [])));

  const unknown = (src: SourceDocument, path: PolicyPath, what: string, name: string, names: Iterable<string>): void => {
    issues.push(src.issue(path, `reference to an unknown ${what} '${name}'${didYouMean(name, names)}`, 'reference'));
  };

  const claimPath = (routeIndex: number | undefined): PolicyPath => (routeIndex === undefined ? ['name'] : ['routes', routeIndex]);
  const claim = (src: SourceDocument, owner: string, kind: 'Model' | 'Pipeline', routes: readonly ModelRoute[]): void => {
    for (const r of routes) {
      if (!listeners.includes(r.listener)) continue;
      const key = `${r.listener}\u0000${r.host}\u0000${r.pathPrefix}`;
      const first = claims.get(key);
      if (first) {
        const what = `listener '${r.listener}', host '${r.host}', path prefix '${r.pathPrefix}'${r.routeIndex === undefined ? ' (the default route)' : ''}`;
        const by = first.owner === owner ? `this ${kind.toLowerCase()}` : `${first.kind} '${first.owner}'`;
        const at = whereAt({ src: first.src, path: claimPath(first.routeIndex) });
        issues.push(src.issue(claimPath(r.routeIndex), `${what} is already claimed by ${by} (${at})`, 'conflict'));
      } else {
        claims.set(key, { owner, kind, src, routeIndex: r.routeIndex });
      }
    }
  };
  const checkListeners = (src: SourceDocument, routes: PipelinePolicy['routes']): void => {
    // With a broken Gateway the listeners are unknown, and judging routes against the default would mislead.
    if (!known.gatewayValid) return;
    routes?.forEach((r, i) => {
      if (!listeners.includes(r.listener)) unknown(src, ['routes', i, 'listener'], 'listener', r.listener, listeners);
    });
  };
  // The listeners each valid Model is published on: a pipeline's steps go back through the listener it was called on.
  // Built only when a pipeline needs it (most policies have none).
  let modelListeners: Map<string, Set<string>> | undefined;
  const listenersOf = (model: string): Set<string> | undefined => {
    modelListeners ??= new Map(docs.flatMap((d) => (d.kind === 'Model' ? [[d.policy.name, new Set(modelRoutes(d.policy, gateway).map((r) => r.listener))] as const] : [])));
    return modelListeners.get(model);
  };

  for (const d of docs) {
    const src = d.source;
    if (d.kind === 'Pipeline') {
      const p = d.policy;
      checkListeners(src, p.routes);
      const routes = known.gatewayValid ? pipelineRoutes(p, gateway) : [];
      claim(src, p.name, 'Pipeline', routes);
      p.steps.forEach((s, i) => {
        if (!known.models.has(s.model)) {
          const nested = known.pipelines?.has(s.model) ? ` ('${s.model}' is a Pipeline; a step calls a Model)` : didYouMean(s.model, known.models);
          issues.push(src.issue(['steps', i, 'model'], `reference to an unknown model '${s.model}'${nested}`, 'reference'));
          return;
        }
        const on = listenersOf(s.model);
        if (!on) return;
        for (const l of new Set(routes.map((r) => r.listener))) {
          if (!on.has(l)) issues.push(src.issue(['steps', i, 'model'], `Model '${s.model}' has no route on listener '${l}', where this pipeline is published; its steps go back through that listener`, 'reference'));
        }
      });
      p.access?.consumers.forEach((c, i) => {
        if (!known.consumers.has(c)) unknown(src, ['access', 'consumers', i], 'consumer', c, known.consumers);
      });
    } else if (d.kind === 'Model') {
      const m = d.policy;
      checkListeners(src, m.routes);
      claim(src, m.name, 'Model', known.gatewayValid ? modelRoutes(m, gateway) : []);
      if (m.proxyless) {
        const first = targets.get(m.proxyless.target);
        if (first) issues.push(src.issue(['proxyless', 'target'], `proxyless target '${m.proxyless.target}' is already served by Model '${first.model}' (${whereAt(first.at)})`, 'conflict'));
        else targets.set(m.proxyless.target, { model: m.name, at: { src, path: ['proxyless', 'target'] } });
      }
      m.access?.consumers.forEach((c, i) => {
        if (!known.consumers.has(c)) unknown(src, ['access', 'consumers', i], 'consumer', c, known.consumers);
      });
      for (const rule of m.access?.versions ?? []) {
        rule.consumers.forEach((c, i) => {
          if (!known.consumers.has(c)) unknown(src, ['access', 'versions', rule.key, 'consumers', i], 'consumer', c, known.consumers);
        });
      }
    } else if (d.kind === 'Consumer') {
      const c = d.policy;
      if (c.jwt && known.gatewayValid && !issuers.includes(c.jwt.issuer)) {
        const none = issuers.length === 0 ? ' (the Gateway declares no auth.jwt issuers)' : didYouMean(c.jwt.issuer, issuers);
        issues.push(src.issue(['jwt', 'issuer'], `reference to an unknown JWT issuer '${c.jwt.issuer}'${none}`, 'reference'));
      }
      for (const list of ['rateLimits', 'tokenQuotas'] as const) {
        c[list].forEach((limit, i) => {
          if (limit.model !== undefined && !known.models.has(limit.model) && !known.pipelines?.has(limit.model)) unknown(src, [list, i, 'model'], 'model', limit.model, known.models);
          // Its proxyless callers skip the filter service: a limit on it alone would be a promise nobody keeps.
          if (limit.model !== undefined && proxyless.has(limit.model)) {
            issues.push(src.issue([list, i, 'model'], `Model '${limit.model}' is served to proxyless gRPC clients, which skip the filter service: its ${list} cannot be enforced`, 'conflict'));
          }
        });
      }
      c.apiKeys.forEach((k, i) => {
        const firstId = keyIds.get(k.id);
        if (firstId) issues.push(src.issue(['apiKeys', i, 'id'], `duplicate API key id '${k.id}' (first used at ${whereAt(firstId)})`, 'duplicate'));
        else keyIds.set(k.id, { src, path: ['apiKeys', i, 'id'] });
        const firstDigest = keyDigests.get(k.sha256);
        if (firstDigest) {
          const owner = firstDigest.consumer === c.name ? 'this consumer' : `consumer '${firstDigest.consumer}'`;
          issues.push(src.issue(['apiKeys', i, 'sha256'], `the same API key is already given to ${owner} (${whereAt(firstDigest.at)}); one key identifies one consumer`, 'duplicate'));
        } else {
          keyDigests.set(k.sha256, { consumer: c.name, at: { src, path: ['apiKeys', i, 'sha256'] } });
        }
      });
      if (c.jwt) {
        const key = `${c.jwt.issuer}\u0000${c.jwt.subject}`;
        const first = subjects.get(key);
        if (first) issues.push(src.issue(['jwt', 'subject'], `JWT subject '${c.jwt.subject}' of issuer '${c.jwt.issuer}' already identifies consumer '${first.consumer}' (${whereAt(first.at)})`, 'duplicate'));
        else subjects.set(key, { consumer: c.name, at: { src, path: ['jwt', 'subject'] } });
      }
    }
  }
  issues.push(...checkLlm(docs, gateway, gatewaySource, known.gatewayValid));
  return issues;
}

/**
 * A Rollout names a Model that exists, owns that Model's canary weight (so the Model sets no traffic.canary
 * of its own), and, when it promotes, has a stable alias to move.
 */
export function checkRollouts(docs: readonly ValidDocument[], known: KnownNames): PolicyIssue[] {
  const issues: PolicyIssue[] = [];
  // Most policies have no Rollout: then nothing to index.
  if (!docs.some((d) => d.kind === 'Rollout')) return issues;
  const models = new Map<string, Extract<ValidDocument, { kind: 'Model' }>>();
  for (const d of docs) if (d.kind === 'Model') models.set(d.policy.name, d);
  for (const d of docs) {
    if (d.kind !== 'Rollout') continue;
    const r = d.policy;
    if (!known.models.has(r.model)) {
      issues.push(d.source.issue(['model'], `reference to an unknown model '${r.model}'${didYouMean(r.model, known.models)}`, 'reference'));
      continue;
    }
    const model = models.get(r.model);
    if (!model) continue;
    const traffic = model.policy.traffic;
    if (!traffic) {
      issues.push(d.source.issue(['model'], `model '${r.model}' has no traffic plan (an external provider's model has one version); a Rollout needs a registry model with traffic.stable`, 'conflict'));
      continue;
    }
    if (traffic.canary) {
      const at = where(model.source.locate(['traffic', 'canary']));
      issues.push(d.source.issue(['model'], `model '${r.model}' sets traffic.canary (${at}); a Rollout decides the canary's weight: remove traffic.canary and name the canary here`, 'conflict'));
    }
    const costBound = r.metrics?.findIndex((m) => m.name === 'cost_per_request') ?? -1;
    if (costBound >= 0 && !model.policy.llm?.pricing) {
      issues.push(d.source.issue(['metrics', costBound], `cost_per_request needs a price table: model '${r.model}' sets no llm.pricing, so no request of it has a cost`, 'conflict'));
    }
    if ((r.onSuccess ?? 'promote') === 'promote' && !('alias' in traffic.stable)) {
      const at = where(model.source.locate(['traffic', 'stable']));
      issues.push(d.source.issue(['onSuccess'], `promotion moves the stable alias, but model '${r.model}' names its stable version by stage or number (${at}); use an alias there, or onSuccess: pause`, 'conflict'));
    }
  }
  return issues;
}

/** Whether two listener addresses can both bind one port: a wildcard takes the port on every address of its family. */
function bindsOverlap(a: string, b: string): boolean {
  if (a === b) return true;
  // '::' is dual-stack on Linux by default, so it also takes the IPv4 port.
  if (a === '::' || b === '::') return true;
  if (a === '0.0.0.0') return isIP(b) === 4;
  if (b === '0.0.0.0') return isIP(a) === 4;
  return false;
}

/** Unique listener and issuer names; one listener per port and address. */
function checkGateway(gateway: GatewayPolicy, src: SourceDocument): PolicyIssue[] {
  const issues: PolicyIssue[] = [];
  gateway.listeners.forEach((l, i) => {
    const sameName = gateway.listeners.findIndex((o) => o.name === l.name);
    if (sameName < i) {
      issues.push(src.issue(['listeners', i, 'name'], `duplicate listener name '${l.name}' (first defined at ${where(src.locate(['listeners', sameName, 'name']))})`, 'duplicate'));
    }
    const clash = gateway.listeners.findIndex((o, j) => j < i && o.port === l.port && bindsOverlap(o.address, l.address));
    const other = gateway.listeners[clash];
    if (other) {
      issues.push(src.issue(['listeners', i, 'port'], `port ${l.port} on ${l.address} is already bound by listener '${other.name}' on ${other.address} (${where(src.locate(['listeners', clash, 'port']))})`, 'conflict'));
    }
  });
  gateway.auth.jwt.forEach((j, i) => {
    const first = gateway.auth.jwt.findIndex((o) => o.name === j.name);
    if (first < i) issues.push(src.issue(['auth', 'jwt', i, 'name'], `duplicate JWT issuer name '${j.name}' (first defined at ${where(src.locate(['auth', 'jwt', first, 'name']))})`, 'duplicate'));
  });
  return issues;
}
