import { mkdtempSync, readdirSync, rmSync, writeFileSync, mkdirSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { formatIssues } from '../../src/policy/format.js';
import { loadPolicyDir, policyFromFiles, type PolicyLoad } from '../../src/policy/load.js';
import { expectGolden } from '../harness/golden.js';

/**
 * The loader against directories on disk: every valid fixture loads (its normalized policy is a golden), every
 * invalid fixture is rejected with exactly the issues of its expected-issues.txt, and each kind of error
 * the mission names is also shown inline, with the YAML beside the line:col it must produce.
 */

const TESTDATA = join(import.meta.dirname, 'testdata');
const cases = (kind: 'valid' | 'invalid'): string[] => readdirSync(join(TESTDATA, kind)).sort();

function issuesOf(load: PolicyLoad, dirAsTyped = 'policy'): string {
  expect(load.ok, 'the load must fail').toBe(false);
  return load.ok ? '' : formatIssues(load.issues, dirAsTyped);
}

/** Loads inline files as the directory `policy/`. */
function load(files: Record<string, string>): PolicyLoad {
  return policyFromFiles('policy', Object.entries(files).map(([file, text]) => ({ file, text })));
}

describe('valid policy directories', () => {
  test.each(cases('valid'))('%s loads; its normalized policy matches expected-policy.json', async (name) => {
    const dir = join(TESTDATA, 'valid', name);
    const result = await loadPolicyDir(dir);
    if (!result.ok) expect.fail(formatIssues(result.issues, dir));
    const { hash, files, gateway, models, consumers } = result.policy;
    const normalized = { hash, files, gateway, models: [...models.values()], consumers: [...consumers.values()] };
    expectGolden(join(dir, 'expected-policy.json'), JSON.stringify(normalized, null, 2));
  });

  test('the quickstart example loads with the fraud-detector canary', async () => {
    const result = await loadPolicyDir(join(import.meta.dirname, '../../examples/quickstart/policy'));
    if (!result.ok) expect.fail(formatIssues(result.issues, 'examples/quickstart/policy'));
    const model = result.policy.models.get('fraud-detector');
    expect(model?.traffic).toMatchObject({ stable: { alias: 'champion' }, canary: { alias: 'challenger', weight: 10 } });
    expect(model?.upstream).toEqual({ versionTag: 'flowgate.address' });
    expect(result.policy.gateway.listeners).toEqual([{ name: 'public', address: '0.0.0.0', port: 10000 }]);
  });

  test('dot-files, dot-directories and non-YAML files are not read', async () => {
    const result = await loadPolicyDir(join(TESTDATA, 'valid', 'multi-doc'));
    expect(result.ok && result.policy.files).toEqual(['all.yml', 'teams/risk/models.yaml']);
  });
});

describe('invalid policy directories', () => {
  test.each(cases('invalid'))('%s is rejected with the issues of expected-issues.txt', async (name) => {
    const dir = join(TESTDATA, 'invalid', name);
    const text = issuesOf(await loadPolicyDir(dir));
    expect(text.length).toBeGreaterThan(0);
    expectGolden(join(dir, 'expected-issues.txt'), text);
  });
});

describe('each kind of error names file:line:col, the path, and what to do', () => {
  const model = (extra: string): string =>
    `kind: Model\nname: fraud-detector\nupstream: { versionTag: flowgate.address }\ntraffic:\n  stable: { alias: champion }\n${extra}`;

  test('a value out of range points at the value', () => {
    expect(issuesOf(load({ 'models.yaml': model('  canary: { alias: challenger, weight: 140 }\n') }))).toBe(
      'policy/models.yaml:6:40: traffic.canary.weight: must be a whole number between 0 and 100 (got 140)',
    );
  });

  test('a missing required key points at the mapping that should hold it', () => {
    const text = 'kind: Model\nname: m\nupstream: { versionTag: t }\ntraffic:\n  canary: { alias: c, weight: 1 }\n';
    expect(issuesOf(load({ 'm.yaml': text }))).toBe('policy/m.yaml:4:1: traffic.stable: is required');
  });

  test('YAML syntax errors carry their own position, and the file is rejected whole', () => {
    const text = 'kind: Model\nname: m\ntraffic:\n  stable: { alias: champion\nupstream: x\n';
    expect(issuesOf(load({ 'm.yaml': text, 'ok.yaml': model('') }))).toMatch(/^policy\/m\.yaml:5:1: YAML: Flow map .* end with a \}$/);
  });

  test('a duplicate key is a YAML error at the second key', () => {
    expect(issuesOf(load({ 'm.yaml': model('timeout: 1s\ntimeout: 2s\n') }))).toBe('policy/m.yaml:7:1: YAML: Map keys must be unique');
  });

  test('an unknown key points at the key and suggests the closest known one', () => {
    expect(issuesOf(load({ 'models.yaml': model('timout: 10s\n') }))).toBe(
      "policy/models.yaml:6:1: timout: unknown key 'timout' (did you mean 'timeout'?)",
    );
    expect(issuesOf(load({ 'models.yaml': model('  canary: { alias: challenger, wieght: 10 }\n') }))).toContain(
      "policy/models.yaml:6:32: traffic.canary.wieght: unknown key 'wieght' (did you mean 'weight'?)",
    );
  });

  test('an unknown kind suggests the closest kind', () => {
    expect(issuesOf(load({ 'x.yaml': 'kind: consumer\nname: a\n' }))).toBe(
      `policy/x.yaml:1:7: kind: unknown kind "consumer" (did you mean 'Consumer'?); one of Gateway, Model, Consumer, Rollout, Pipeline`,
    );
  });

  test('a Consumer limit on a model that does not exist is a reference to an unknown model', () => {
    const consumer = 'kind: Consumer\nname: acme\nrateLimits:\n  - { requests: 5, per: minute, model: fraud-detectr }\n';
    expect(issuesOf(load({ 'models.yaml': model(''), 'consumers.yaml': consumer }))).toBe(
      "policy/consumers.yaml:4:40: rateLimits[0].model: reference to an unknown model 'fraud-detectr' (did you mean 'fraud-detector'?)",
    );
  });

  test('a model that failed its own schema is still a known name, so its references do not cascade', () => {
    const consumer = 'kind: Consumer\nname: acme\ntokenQuotas:\n  - { tokens: 5, per: day, model: fraud-detector }\n';
    expect(issuesOf(load({ 'models.yaml': model('pinning: maybe\n'), 'consumers.yaml': consumer }))).toBe(
      'policy/models.yaml:6:10: pinning: must be true or false (got "maybe")',
    );
  });

  test('a route on an unknown listener', () => {
    expect(issuesOf(load({ 'models.yaml': model('routes:\n  - listener: pubic\n') }))).toBe(
      "policy/models.yaml:7:15: routes[0].listener: reference to an unknown listener 'pubic' (did you mean 'public'?)",
    );
  });

  test('a duplicate name points at the second document and says where the first is', () => {
    expect(issuesOf(load({ 'a.yaml': model(''), 'b.yaml': `# same name\n${model('')}` }))).toBe(
      "policy/b.yaml:3:7: name: duplicate Model name 'fraud-detector' (first defined at a.yaml:2:7)",
    );
  });

  test('two models claiming the same listener, host and path prefix conflict', () => {
    const other = 'kind: Model\nname: other\nupstream: { versionTag: t }\ntraffic: { stable: { alias: a } }\nroutes:\n  - { listener: public, pathPrefix: /models/fraud-detector }\n';
    expect(issuesOf(load({ 'a.yaml': model(''), 'b.yaml': other }))).toBe(
      "policy/b.yaml:6:5: routes[0]: listener 'public', host '*', path prefix '/models/fraud-detector' is already claimed by Model 'fraud-detector' (a.yaml:2:7)",
    );
  });

  test('a model kept from the load before is judged against the Gateway of this load', () => {
    // a.yaml is the same text in both loads, so its document is the same (frozen) object; its default routes
    // cover every listener, so the listener the edited Gateway adds is claimed by it too.
    const gateway = (listeners: string): string => `kind: Gateway\nlisteners:\n  - { name: public, address: 0.0.0.0, port: 10000 }\n${listeners}`;
    const other = (route: string): string => `kind: Model\nname: other\nupstream: { versionTag: t }\ntraffic: { stable: { alias: a } }\nroutes:\n  - ${route}\n`;
    const before = { 'gateway.yaml': gateway(''), 'a.yaml': model(''), 'b.yaml': other('{ listener: public, pathPrefix: /other }') };
    // Twice: the second load sees the documents the first one froze.
    expect(load(before).ok).toBe(true);
    expect(load(before).ok).toBe(true);
    const internal = '  - { name: internal, address: 127.0.0.1, port: 10001 }\n';
    expect(issuesOf(load({ 'gateway.yaml': gateway(internal), 'a.yaml': model(''), 'b.yaml': other('{ listener: internal, pathPrefix: /models/fraud-detector }') }))).toBe(
      "policy/b.yaml:6:5: routes[0]: listener 'internal', host '*', path prefix '/models/fraud-detector' is already claimed by Model 'fraud-detector' (a.yaml:2:7)",
    );
  });

  test('a custom masking regex that RE2 cannot compile reports the RE2 error at the regex', () => {
    const masking = 'masking:\n  request:\n    custom:\n      - name: lookahead\n        regex: "card(?=[0-9])"\n';
    expect(issuesOf(load({ 'models.yaml': model(masking) }))).toBe(
      'policy/models.yaml:10:16: masking.request.custom[0].regex: does not compile under RE2: invalid perl operator: (?=',
    );
  });

  test('a duration without a unit, and one with an unknown unit', () => {
    expect(issuesOf(load({ 'models.yaml': model('timeout: 30\nconnectTimeout: 1w\n') }))).toBe(
      [
        'policy/models.yaml:6:10: timeout: must be a duration with a unit, e.g. "30s" or "30ms" (got 30)',
        'policy/models.yaml:7:17: connectTimeout: must be a duration like 250ms, 5s, 2m, 1h or 1d (got "1w")',
      ].join('\n'),
    );
  });

  test('issues from several files come sorted by file, then line', () => {
    const lines = issuesOf(load({ 'b.yaml': model('timeout: x\npinning: 1\n'), 'a.yaml': 'kind: Gateway\nlisteners: []\n' })).split('\n');
    expect(lines.map((l) => l.split(': ')[0])).toEqual(['policy/a.yaml:2:12', 'policy/b.yaml:6:10', 'policy/b.yaml:7:10']);
  });

  test('a key pasted into sha256 is never echoed back', () => {
    const text = 'kind: Consumer\nname: a\napiKeys:\n  - { id: k, sha256: sk-live-secret }\n';
    const out = issuesOf(load({ 'c.yaml': text }));
    expect(out).toContain('apiKeys[0].sha256');
    expect(out).not.toContain('sk-live-secret');
  });
});

describe('the directory itself', () => {
  const temp = mkdtempSync(join(tmpdir(), 'flowgate-policy-load-'));
  afterAll(() => rmSync(temp, { recursive: true, force: true }));

  test('a missing directory is an issue, not an exception', async () => {
    expect(issuesOf(await loadPolicyDir(join(temp, 'nope')), 'nope')).toMatch(/^nope: cannot read the policy directory: ENOENT/);
  });

  test('a directory without policy files is rejected (a failed mount must not unpublish every model)', async () => {
    mkdirSync(join(temp, 'empty'));
    writeFileSync(join(temp, 'empty', 'README.md'), 'not policy');
    expect(issuesOf(await loadPolicyDir(join(temp, 'empty')), 'empty/')).toBe('empty/: no policy files (*.yaml, *.yml) found');
  });

  test('a ConfigMap-style directory of symlinks into ..data is read through the links', async () => {
    const dir = join(temp, 'configmap');
    mkdirSync(join(dir, '..2026_01_01'), { recursive: true });
    writeFileSync(join(dir, '..2026_01_01', 'models.yaml'), 'kind: Model\nname: m\nupstream: { versionTag: t }\ntraffic: { stable: { alias: a } }\n');
    symlinkSync('..2026_01_01', join(dir, '..data'));
    symlinkSync('..data/models.yaml', join(dir, 'models.yaml'));
    symlinkSync('.', join(dir, 'loop'));
    const result = await loadPolicyDir(dir);
    expect(result.ok && [...result.policy.models.keys()]).toEqual(['m']);
    expect(result.ok && result.policy.files).toEqual(['models.yaml']);
  });
});
