import type { NodeMatcher__Output } from '../generated/envoy/type/matcher/v3/NodeMatcher.js';
import type { StringMatcher__Output } from '../generated/envoy/type/matcher/v3/StringMatcher.js';
import { FlowgateError } from '../errors.js';

/**
 * CSDS node selection: a NodeMatcher on the node id (exact, prefix, suffix or contains, optionally ignoring
 * case). Regex, custom and metadata matchers are refused rather than ignored: answering with every node
 * would look like a match.
 */

export class UnsupportedMatcherError extends FlowgateError {
  constructor(what: string) {
    super('csds_unsupported_matcher', `node matcher ${what} is not supported (use node_id exact, prefix, suffix or contains)`, 'csds');
  }
}

/** Throws UnsupportedMatcherError for a matcher this server cannot evaluate. */
export function checkMatcher(m: NodeMatcher__Output): void {
  if (m.node_metadatas.length > 0) throw new UnsupportedMatcherError('node_metadatas');
  const kind = m.node_id?.match_pattern;
  if (kind === 'safe_regex' || kind === 'custom') throw new UnsupportedMatcherError(`node_id.${kind}`);
}

/** Whether a node id matches (a matcher without node_id matches every node). */
export function matchesNode(m: NodeMatcher__Output, nodeId: string): boolean {
  checkMatcher(m);
  return m.node_id ? matchesString(m.node_id, nodeId) : true;
}

function matchesString(m: StringMatcher__Output, value: string): boolean {
  const fold = (s: string): string => (m.ignore_case ? s.toLowerCase() : s);
  const v = fold(value);
  switch (m.match_pattern) {
    case 'exact':
      return v === fold(m.exact ?? '');
    case 'prefix':
      return v.startsWith(fold(m.prefix ?? ''));
    case 'suffix':
      return v.endsWith(fold(m.suffix ?? ''));
    case 'contains':
      return v.includes(fold(m.contains ?? ''));
    default:
      return true;
  }
}
