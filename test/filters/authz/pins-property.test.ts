import { describe, expect, it } from 'vitest';
import { resolvePins } from '../../../filters/authz/pins.js';
import type { LiveVersionRule } from '../../../src/contract/filter-policy.js';
import { seededRandom } from '../../harness/prng.js';

/**
 * A property test of pin reading: random multiplicities of x-model-version and x-model-alias values
 * (repeated headers arrive comma-joined from Envoy), with random spacing, empty items, junk, versions and
 * aliases of the live set, and names of versions that are not live. The generator knows what each value it
 * wrote means, so the expected answer is computed from the generated meanings, not by parsing the headers:
 * a request is pinned only when every value names one and the same live version; a single value that names
 * nothing is not live; anything else present is ambiguous. Seeded, so a failure replays
 * (FLOWGATE_FUZZ_SEED and FLOWGATE_FUZZ_CASES explore further).
 */

const SEED = Number(process.env.FLOWGATE_FUZZ_SEED ?? 20261202);
const CASES = Number(process.env.FLOWGATE_FUZZ_CASES ?? 3000);


const LIVE: LiveVersionRule[] = [
  { version: '6', aliases: ['champion', 'prod'], weight: 90 },
  { version: '7', aliases: ['challenger'], weight: 10 },
];

/** A value and what it names: a live version, or nothing (junk, a version or alias that is not live). */
type Token = { readonly text: string; readonly names: string | undefined };

const VERSION_TOKENS: Token[] = [
  { text: '6', names: '6' },
  { text: '7', names: '7' },
  { text: '8', names: undefined },
  { text: 'junk', names: undefined },
  { text: '06', names: undefined },
];
const ALIAS_TOKENS: Token[] = [
  { text: 'champion', names: '6' },
  { text: 'prod', names: '6' },
  { text: 'challenger', names: '7' },
  { text: 'shadow', names: undefined },
  { text: 'Champion', names: undefined },
];

/** A header value of `tokens`, joined like Envoy joins repeats, with random blanks and empty items. */
function headerText(tokens: readonly Token[], rnd: () => number): string {
  const pad = (): string => [' ', '  ', '\t', ''][Math.floor(rnd() * 4)] ?? '';
  const parts: string[] = [];
  for (const t of tokens) {
    if (rnd() < 0.15) parts.push(pad()); // an empty item: `6,,6`
    parts.push(`${pad()}${t.text}${pad()}`);
  }
  if (rnd() < 0.1) parts.push('');
  return parts.join(',');
}

function pick(tokens: readonly Token[], rnd: () => number, n: number): Token[] {
  return Array.from({ length: n }, () => tokens[Math.floor(rnd() * tokens.length)] as Token);
}

describe('pin headers, random multiplicities and encodings', () => {
  it(`${CASES} cases: pinned exactly when every value names the same live version`, () => {
    const rnd = seededRandom(SEED);
    const seen = { none: 0, pinned: 0, ambiguous: 0, not_live: 0 };
    for (let i = 0; i < CASES; i++) {
      const hasVersion = rnd() < 0.7;
      const hasAlias = rnd() < 0.5;
      const versions = hasVersion ? pick(VERSION_TOKENS, rnd, Math.floor(rnd() * 4)) : [];
      const aliases = hasAlias ? pick(ALIAS_TOKENS, rnd, Math.floor(rnd() * 4)) : [];
      const versionHeader = hasVersion ? headerText(versions, rnd) : undefined;
      const aliasHeader = hasAlias ? headerText(aliases, rnd) : undefined;
      const all = [...versions, ...aliases];
      const named = new Set(all.map((t) => t.names));

      let expected: string;
      if (!hasVersion && !hasAlias) expected = 'none';
      else if (all.length === 0) expected = 'ambiguous';
      else if (all.length === 1) expected = all[0]?.names !== undefined ? `pinned:${all[0]?.names}` : 'not_live';
      else if (named.size === 1 && !named.has(undefined)) expected = `pinned:${[...named][0]}`;
      else expected = 'ambiguous';

      const got = resolvePins(versionHeader, aliasHeader, LIVE);
      const shown = got.kind === 'pinned' ? `pinned:${got.version}` : got.kind;
      const context = `case ${i}: x-model-version=${JSON.stringify(versionHeader)} x-model-alias=${JSON.stringify(aliasHeader)}`;
      expect(shown, context).toBe(expected);
      if (got.kind === 'pinned') expect(LIVE.map((l) => l.version), context).toContain(got.version);
      seen[got.kind]++;
    }
    // The generator reached every answer often enough for the property to mean something.
    for (const [kind, n] of Object.entries(seen)) expect(n, kind).toBeGreaterThan(CASES / 50);
  });
});
