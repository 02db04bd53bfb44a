import type { AccessRules, VersionAccessRule } from '../../src/contract/filter-policy.js';

/**
 * The `access` rules of a Model applied to an authenticated caller: the model-wide rule, then the rule of
 * every alias or version the request pins.
 */

/** An authenticated caller as the access rules see it. */
export interface Caller {
  readonly consumer: string;
  readonly roles: readonly string[];
}

/** What the request pins (x-model-version / x-model-alias) and how aliases map to versions right now. */
export interface Pins {
  readonly pinnedVersion?: string;
  readonly pinnedAlias?: string;
  /** The aliases currently on a version, so a version pin cannot bypass an alias rule. */
  readonly aliasesOfVersion?: (version: string) => readonly string[];
  /** The version an alias currently names, so an alias pin cannot bypass a version rule. */
  readonly versionOfAlias?: (alias: string) => string | undefined;
}

/** The verdict: admitted, or the rule that refused (absent `rule` means the model-wide rule). */
export type AccessVerdict = { readonly admitted: true } | { readonly admitted: false; readonly rule?: VersionAccessRule };

/**
 * True when the rule admits the caller: a listed consumer, or a holder of a listed role. A rule that lists
 * neither (`access: {}`) admits every authenticated consumer: it asks for authentication, not for nobody,
 * since a model no one may call is a mistake rather than a policy.
 */
export function ruleAdmits(rule: { readonly roles: readonly string[]; readonly consumers: readonly string[] }, caller: Caller): boolean {
  if (rule.roles.length === 0 && rule.consumers.length === 0) return true;
  return rule.consumers.includes(caller.consumer) || caller.roles.some((r) => rule.roles.includes(r));
}

/** The version rules a request's pins bring into force, in policy order. */
export function pinnedRules(rules: readonly VersionAccessRule[], pins: Pins): VersionAccessRule[] {
  const aliases = new Set<string>();
  const versions = new Set<string>();
  if (pins.pinnedAlias !== undefined) {
    aliases.add(pins.pinnedAlias);
    const version = pins.versionOfAlias?.(pins.pinnedAlias);
    if (version !== undefined) versions.add(version);
  }
  if (pins.pinnedVersion !== undefined) {
    versions.add(pins.pinnedVersion);
    for (const alias of pins.aliasesOfVersion?.(pins.pinnedVersion) ?? []) aliases.add(alias);
  }
  return rules.filter((r) => ('alias' in r.selector ? aliases.has(r.selector.alias) : versions.has(r.selector.version)));
}

/** Applies the model-wide rule and every rule the pins bring into force; all must admit the caller. */
export function checkAccess(access: AccessRules, caller: Caller, pins: Pins): AccessVerdict {
  if (!ruleAdmits(access, caller)) return { admitted: false };
  for (const rule of pinnedRules(access.versions, pins)) {
    if (!ruleAdmits(rule, caller)) return { admitted: false, rule };
  }
  return { admitted: true };
}
