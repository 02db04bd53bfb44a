import { logger } from '../../src/observability/log.js';
import type { ConsumerRules, JwtIssuerRules, ModelRules } from '../../src/contract/filter-policy.js';
import { Header } from '../../src/contract/filter-wire.js';
import { pinnedRules, ruleAdmits } from './access.js';
import type { Caller } from './access.js';
import { resolvePins } from './pins.js';
import { presentedCredential } from './credentials.js';
import type { PresentedCredential } from './credentials.js';
import { allowDecision, denyDecision } from './decision.js';
import type { AllowReason, AuthzDecision, AuthzDeny } from './decision.js';
import { JwtVerifier } from './jwt.js';
import type { JwtFailure, RemoteKeySetOptions } from './jwt.js';
import { ApiKeyIndex } from './keys.js';

export type { AuthzAllow, AuthzDecision, AuthzDeny, DenyCode } from './decision.js';

/**
 * The authorization decision for one request to one Model: who is calling (API key or JWT), and whether the
 * Model's `access` rules let them. Built once per policy; a new policy means a new Authorizer.
 */

const log = logger('authz');

/** One request as the ext_authz server sees it. */
export interface AuthzRequest {
  /** The policy Model the route belongs to. */
  readonly model: string;
  /** Request headers, names lower-cased; a repeated header's values joined with ',' (as Envoy sends them). */
  readonly headers: Readonly<Record<string, string>>;
}

/** The rules an Authorizer enforces. */
export interface AuthzPolicy {
  readonly jwtIssuers: readonly JwtIssuerRules[];
  readonly models: readonly ModelRules[];
  readonly consumers: readonly ConsumerRules[];
}

type Identified = { readonly ok: true; readonly caller: Caller; readonly via: Exclude<AllowReason, 'anonymous'> } | { readonly ok: false; readonly deny: AuthzDeny };

const JWT_DENIALS: Readonly<Record<JwtFailure, { reason: Parameters<typeof denyDecision>[0]; code: 'invalid_credentials' | 'expired_token' }>> = {
  malformed: { reason: 'malformed_token', code: 'invalid_credentials' },
  unknown_issuer: { reason: 'unknown_issuer', code: 'invalid_credentials' },
  invalid: { reason: 'invalid_token', code: 'invalid_credentials' },
  expired: { reason: 'expired_token', code: 'expired_token' },
  unknown_subject: { reason: 'unknown_subject', code: 'invalid_credentials' },
  keys_unavailable: { reason: 'jwks_unavailable', code: 'invalid_credentials' },
};

/** Decides, per request, whether the caller may call the model, and what Envoy should do to the headers. */
export class Authorizer {
  private readonly models: ReadonlyMap<string, ModelRules>;
  private readonly consumers: ReadonlyMap<string, ConsumerRules>;
  private readonly apiKeys: ApiKeyIndex;
  readonly jwt: JwtVerifier;

  /** Indexes the policy; remote JWT key sets are fetched on first use (or by `jwt.prefetch()`). */
  constructor(input: AuthzPolicy, options: { remoteKeySets?: RemoteKeySetOptions } = {}) {
    this.models = new Map(input.models.map((m) => [m.name, m]));
    this.consumers = new Map(input.consumers.map((c) => [c.name, c]));
    this.apiKeys = new ApiKeyIndex(input.consumers);
    this.jwt = new JwtVerifier(input.jwtIssuers, input.consumers, options.remoteKeySets ? { remote: options.remoteKeySets } : {});
  }

  /** The decision for one request; never rejects (a failure to verify is a deny, not an error). */
  async authorize(req: AuthzRequest): Promise<AuthzDecision> {
    const decision = await this.decide(req);
    if (!decision.allow) log.debug({ model: req.model, consumer: decision.consumer, code: decision.code, status: decision.status }, 'request denied');
    return decision;
  }

  /**
   * Who is calling, for answers that depend on the caller alone (the LLM API's model list): no credential,
   * a consumer, or the 401 refusing the credential presented.
   */
  async identifyCaller(headers: Readonly<Record<string, string>>): Promise<{ readonly caller: Caller | undefined } | { readonly deny: AuthzDeny }> {
    const presented = presentedCredential(headers);
    if (presented.kind === 'none') return { caller: undefined };
    const identified = await this.identify(presented);
    return identified.ok ? { caller: identified.caller } : { deny: identified.deny };
  }

  private async decide(req: AuthzRequest): Promise<AuthzDecision> {
    const model = this.models.get(req.model);
    if (!model) {
      // Envoy only calls for routes built from the policy, so this is a policy/route mismatch during a reload.
      return denyDecision('unknown_model', { status: 403, code: 'unknown_model', message: `model '${req.model}' is not in the serving policy` });
    }
    const presented = presentedCredential(req.headers);
    // A credential that is presented is always checked, even for an open model: a caller whose key was revoked
    // or whose token expired learns so at once instead of being silently served (and counted) as anonymous.
    const identified = presented.kind === 'none' ? undefined : await this.identify(presented);
    if (identified && !identified.ok) return identified.deny;

    const access = model.access;
    if (access && !identified) {
      return denyDecision('missing_credentials', {
        status: 401,
        code: 'missing_credentials',
        message: `model '${model.name}' needs an API key (x-api-key or authorization: Bearer) or a JWT (authorization: Bearer)`,
      });
    }
    const caller = identified?.caller;
    if (access && caller && !ruleAdmits(access, caller)) {
      return denyDecision('forbidden', { status: 403, code: 'forbidden', message: `consumer '${caller.consumer}' may not call model '${model.name}'`, consumer: caller.consumer });
    }
    // Only now, once the caller is known to be allowed, may an answer say which versions are live.
    const route = this.routeVersion(model, caller, req.headers);
    if ('deny' in route) return route.deny;
    return identified ? allowDecision(identified.via, identified.caller, route.version) : allowDecision('anonymous', undefined, route.version);
  }

  /**
   * The version Envoy must route to: the one the pins name (after its version rules admit the caller), or,
   * unpinned, the first live version the caller may use when it may not use them all; undefined for the
   * model's own split.
   */
  private routeVersion(model: ModelRules, caller: Caller | undefined, headers: Readonly<Record<string, string>>): { version: string | undefined } | { deny: AuthzDeny } {
    const rules = model.access?.versions ?? [];
    const admits = (version: string): { admitted: boolean; rule?: (typeof rules)[number] } => {
      if (rules.length === 0) return { admitted: true };
      const aliases = model.live.find((l) => l.version === version)?.aliases ?? [];
      const forced = pinnedRules(rules, { pinnedVersion: version, aliasesOfVersion: () => aliases });
      const refusing = forced.find((r) => caller === undefined || !ruleAdmits(r, caller));
      return refusing ? { admitted: false, rule: refusing } : { admitted: true };
    };
    // Pins only choose a version when the model allows pinning; otherwise they change nothing.
    const pins = model.pinning ? resolvePins(headers[Header.pinVersion], headers[Header.pinAlias], model.live) : { kind: 'none' as const };
    const who = caller ? `consumer '${caller.consumer}'` : 'this caller';
    switch (pins.kind) {
      case 'ambiguous':
        return { deny: denyDecision('ambiguous_pin', { status: 400, code: 'ambiguous_pin', message: `${pins.detail}; send one x-model-version or one x-model-alias`, consumer: caller?.consumer }) };
      case 'not_live': {
        const header = pins.what === 'version' ? Header.pinVersion : Header.pinAlias;
        const live = model.live.filter((l) => admits(l.version).admitted);
        return {
          deny: denyDecision('version_not_live', {
            status: 404,
            code: 'version_not_live',
            message: `the ${pins.what} named by ${header} is not a live version of model '${model.name}'`,
            consumer: caller?.consumer,
            extra: { model: model.name, live_versions: live.map((l) => l.version), live_aliases: live.flatMap((l) => l.aliases).sort() },
          }),
        };
      }
      case 'pinned': {
        const verdict = admits(pins.version);
        if (!verdict.admitted) {
          const rule = verdict.rule;
          const what = rule && 'alias' in rule.selector ? `alias '${rule.key}'` : `version ${pins.version}`;
          return { deny: denyDecision('forbidden_version', { status: 403, code: 'forbidden', message: `${who} may not pin ${what} of model '${model.name}'`, consumer: caller?.consumer }) };
        }
        return { version: pins.version };
      }
      case 'none': {
        if (rules.length === 0) return { version: undefined };
        const allowed = model.live.filter((l) => admits(l.version).admitted);
        if (allowed.length === model.live.length) return { version: undefined };
        if (allowed.length === 0) {
          return { deny: denyDecision('no_allowed_version', { status: 403, code: 'forbidden', message: `no live version of model '${model.name}' is open to ${who}`, consumer: caller?.consumer }) };
        }
        return { version: (allowed[0] as (typeof allowed)[number]).version };
      }
    }
  }

  /** The consumer a presented credential names, or the 401 that refuses it. */
  private async identify(presented: Exclude<PresentedCredential, { kind: 'none' }>): Promise<Identified> {
    switch (presented.kind) {
      case 'unusable':
        return { ok: false, deny: denyDecision(presented.reason, { status: 401, code: 'invalid_credentials', message: presented.detail }) };
      case 'api_key': {
        const owner = this.apiKeys.lookup(presented.key);
        const consumer = owner && this.consumers.get(owner.consumer);
        if (!consumer) {
          const deny = denyDecision('invalid_api_key', {
            status: 401,
            code: 'invalid_credentials',
            message: 'the API key is not valid',
            challenge: presented.via === 'bearer' ? 'invalid_token' : 'none',
          });
          return { ok: false, deny };
        }
        return { ok: true, via: 'api_key', caller: { consumer: consumer.name, roles: consumer.roles } };
      }
      case 'jwt': {
        const outcome = await this.jwt.verify(presented.token);
        if (!outcome.ok) {
          const { reason, code } = JWT_DENIALS[outcome.failure];
          return { ok: false, deny: denyDecision(reason, { status: 401, code, message: outcome.detail, challenge: 'invalid_token' }) };
        }
        return { ok: true, via: 'jwt', caller: { consumer: outcome.consumer, roles: outcome.roles } };
      }
    }
  }
}
