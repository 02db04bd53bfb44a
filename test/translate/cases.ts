import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import YAML from 'yaml';
import type { GatewayIR } from '../../src/ir/types.js';
import { assertValidIR } from '../../src/ir/validate.js';
import type { ConfigSourceMode } from '../../src/resources/config-source.js';

/**
 * The translator golden cases: testdata/CASE/ir.yaml (written by the IR goldens of the same name, or by
 * hand for a translator-only case) and optionally modes.yaml, the extra xDS modes to render (ADS always).
 */

export const TESTDATA = join(import.meta.dirname, 'testdata');

/** Every case folder, sorted. */
export const CASES: readonly string[] = readdirSync(TESTDATA, { withFileTypes: true })
  .filter((d) => d.isDirectory())
  .map((d) => d.name)
  .sort();

/** A case's IR, checked against the IR's invariants. */
export function caseIR(name: string): GatewayIR {
  return assertValidIR(YAML.parse(readFileSync(join(TESTDATA, name, 'ir.yaml'), 'utf8')) as GatewayIR);
}

/** The xDS modes a case is rendered for. */
export function caseModes(name: string): ConfigSourceMode[] {
  const file = join(TESTDATA, name, 'modes.yaml');
  const extra = existsSync(file) ? (YAML.parse(readFileSync(file, 'utf8')) as ConfigSourceMode[]) : [];
  return ['ads', ...extra];
}
