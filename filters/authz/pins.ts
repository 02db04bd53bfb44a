import type { LiveVersionRule } from '../../src/contract/filter-policy.js';

/**
 * Reading a request's version pins (x-model-version, x-model-alias) strictly. Envoy hands ext_authz each
 * header's values joined with ',' (a header sent twice arrives as `2,2`), while its route matcher would match
 * any single one of them; so Flowgate never lets Envoy route on the client's pin headers. The filter service
 * resolves every value, and only a request whose pins name exactly one live version is pinned (Envoy then
 * routes on an internal header the filter service sets). Anything else is refused: values naming different
 * versions, or a value that names nothing next to others, are ambiguous (400); a single value naming no live
 * version is not live (404).
 */

export type PinResolution =
  | { readonly kind: 'none' }
  | { readonly kind: 'pinned'; readonly version: string }
  | { readonly kind: 'ambiguous'; readonly detail: string }
  | { readonly kind: 'not_live'; readonly what: 'version' | 'alias' };

/** The values of one header, split on ',' (how Envoy joins repeats), trimmed, empty ones dropped. */
export function headerValues(value: string | undefined): string[] {
  if (value === undefined) return [];
  return value
    .split(',')
    .map((v) => v.trim())
    .filter((v) => v !== '');
}

/** What the pin headers of a request name among a model's live versions. */
export function resolvePins(versionHeader: string | undefined, aliasHeader: string | undefined, live: readonly LiveVersionRule[]): PinResolution {
  const versions = headerValues(versionHeader);
  const aliases = headerValues(aliasHeader);
  const present = versionHeader !== undefined || aliasHeader !== undefined;
  if (!present) return { kind: 'none' };
  const total = versions.length + aliases.length;
  if (total === 0) return { kind: 'ambiguous', detail: 'a pin header is present but names nothing' };
  const resolved = new Set<string>();
  let unresolved = 0;
  for (const v of versions) {
    if (live.some((l) => l.version === v)) resolved.add(v);
    else unresolved++;
  }
  for (const a of aliases) {
    const version = live.find((l) => l.aliases.includes(a))?.version;
    if (version !== undefined) resolved.add(version);
    else unresolved++;
  }
  if (total === 1) {
    const [only] = resolved;
    return only !== undefined ? { kind: 'pinned', version: only } : { kind: 'not_live', what: versions.length === 1 ? 'version' : 'alias' };
  }
  if (resolved.size === 1 && unresolved === 0) return { kind: 'pinned', version: [...resolved][0] as string };
  return {
    kind: 'ambiguous',
    detail: `the pin headers carry ${total} values (x-model-version and x-model-alias, repeated or comma-joined) that do not all name one live version`,
  };
}
