import { existsSync, mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import YAML from 'yaml';
import { describe, expect, test } from 'vitest';
import { buildGatewayIR } from '../../src/ir/build.js';
import type { GatewayIR } from '../../src/ir/types.js';
import { irProblems } from '../../src/ir/validate.js';
import { formatIssues } from '../../src/policy/format.js';
import { loadPolicyDir } from '../../src/policy/load.js';
import { loadRegistryFile } from '../../src/registry/file.js';
import { loadSignatureFile } from '../../src/registry/signature-file.js';
import { expectGolden, updating } from '../harness/golden.js';

/**
 * IR goldens: each case in testdata/CASE/ is a policy directory and a registry file (plus, for a case about
 * what the previous IR changes, previous-registry.yaml: the IR is built from it first, then from
 * registry.yaml with that IR as the previous one; for signatures, signatures.yaml: what the versions' MLmodel
 * files say) in, expected-ir.yaml out. The translator goldens of the
 * same name read this very IR (test/translate/testdata/CASE/ir.yaml), so the two levels cannot drift.
 * `UPDATE_GOLDEN=1 npx vitest run test/ir test/translate` rewrites both.
 */

const TESTDATA = join(import.meta.dirname, 'testdata');
const TRANSLATE = join(import.meta.dirname, '..', 'translate', 'testdata');

const CASES = readdirSync(TESTDATA, { withFileTypes: true })
  .filter((d) => d.isDirectory())
  .map((d) => d.name)
  .sort();

/** The IR of one case, as serving would build it. */
async function caseIR(name: string): Promise<GatewayIR> {
  const dir = join(TESTDATA, name);
  const load = await loadPolicyDir(join(dir, 'policy'));
  if (!load.ok) throw new Error(formatIssues(load.issues, join(dir, 'policy')));
  const previousFile = join(dir, 'previous-registry.yaml');
  const previous = existsSync(previousFile) ? buildGatewayIR(load.policy, await loadRegistryFile(previousFile)).ir : undefined;
  const registry = await loadRegistryFile(join(dir, 'registry.yaml'));
  const signaturesFile = join(dir, 'signatures.yaml');
  const signatures = existsSync(signaturesFile) ? await loadSignatureFile(signaturesFile, registry) : undefined;
  const { ir, issues } = buildGatewayIR(load.policy, registry, previous, { signatures });
  if (issues.length > 0) throw new Error(formatIssues(issues, join(dir, 'policy')));
  return ir;
}

function irYaml(ir: GatewayIR): string {
  return YAML.stringify(ir, { lineWidth: 0 });
}

describe('IR goldens (testdata/CASE/{policy/,registry.yaml} -> expected-ir.yaml)', () => {
  test('there are at least 12 cases', () => {
    expect(CASES.length).toBeGreaterThanOrEqual(12);
  });

  test.each(CASES)('%s', async (name) => {
    const ir = await caseIR(name);
    expect(irProblems(ir)).toEqual([]);
    const text = irYaml(ir);
    expectGolden(join(TESTDATA, name, 'expected-ir.yaml'), text);
    // The translator golden of the same name reads exactly this IR.
    const translateCase = join(TRANSLATE, name);
    if (updating) mkdirSync(translateCase, { recursive: true });
    expectGolden(join(translateCase, 'ir.yaml'), text);
  });

  test('a kept-last-live case keeps the previous versions and says so', async () => {
    const ir = await caseIR('kept-last-live');
    const model = ir.models.find((m) => m.name === 'fraud');
    expect(model?.keptLastLive).toBe(true);
    expect(model?.live.map((l) => [l.version, l.weight])).toEqual([['1', 70], ['2', 30]]);
    expect(ir.alerts.map((a) => a.code)).toContain('kept_last_live');
  });

  test('equal meaning, different layout: one file or several, any key order, gives the same IR', async () => {
    const a = await loadPolicyDir(join(TESTDATA, 'filter-tls', 'policy'));
    if (!a.ok) throw new Error('filter-tls does not load');
    const texts = readFileSync(join(TESTDATA, 'filter-tls', 'policy', 'gateway.yaml'), 'utf8').split(/^---$/m);
    expect(texts.length).toBeGreaterThan(1);
    const { policyFromFiles } = await import('../../src/policy/load.js');
    // The same documents, one per file, in another order, with the keys of each mapping reversed.
    const reversed = texts.map((t) => YAML.stringify(Object.fromEntries(Object.entries(YAML.parse(t) as Record<string, unknown>).reverse())));
    const b = policyFromFiles('other', reversed.reverse().map((text, i) => ({ file: `part-${i}.yaml`, text })));
    if (!b.ok) throw new Error(formatIssues(b.issues, 'other'));
    const registry = await loadRegistryFile(join(TESTDATA, 'filter-tls', 'registry.yaml'));
    expect(b.policy.files).not.toEqual(a.policy.files);
    expect(irYaml(buildGatewayIR(b.policy, registry).ir)).toBe(irYaml(buildGatewayIR(a.policy, registry).ir));
  });
});
