import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import YAML from 'yaml';
import { repoRoot } from '../harness/venv.js';

/**
 * deploy/prometheus/alerts.yaml, checked and unit-tested by Prometheus' own promtool (Debian's prometheus
 * package) on the synthetic series of alerts.test.yaml; and every metric a rule reads is one Flowgate exports.
 */

const DIR = join(repoRoot, 'deploy', 'prometheus');
const promtool = (...args: string[]): { status: number | null; out: string } => {
  const r = spawnSync('promtool', args, { cwd: DIR, encoding: 'utf8' });
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
};

describe('Prometheus alerting rules', () => {
  test('promtool accepts the rules', () => {
    const r = promtool('check', 'rules', 'alerts.yaml');
    expect(r.status, r.out).toBe(0);
    expect(r.out).toMatch(/SUCCESS: 8 rules found/);
  });

  test('promtool test rules passes on the synthetic series', () => {
    const r = promtool('test', 'rules', 'alerts.test.yaml');
    expect(r.status, r.out).toBe(0);
    expect(r.out).toContain('SUCCESS');
  });

  test('the tests can fail: a rule with a wrong threshold fails them', () => {
    const dir = mkdtempSync(join(tmpdir(), 'flowgate-rules-'));
    writeFileSync(join(dir, 'alerts.yaml'), readFileSync(join(DIR, 'alerts.yaml'), 'utf8').replace('flowgate_registry_sync_age_seconds > 300', 'flowgate_registry_sync_age_seconds > 3000'));
    copyFileSync(join(DIR, 'alerts.test.yaml'), join(dir, 'alerts.test.yaml'));
    const r = spawnSync('promtool', ['test', 'rules', 'alerts.test.yaml'], { cwd: dir, encoding: 'utf8' });
    expect(r.status).not.toBe(0);
    expect(`${r.stdout}${r.stderr}`).toContain('FlowgateRegistrySyncStale');
  });

  test('every metric a rule reads is one Flowgate registers', () => {
    const doc = YAML.parse(readFileSync(join(DIR, 'alerts.yaml'), 'utf8')) as { groups: { rules: { expr: string }[] }[] };
    const names = new Set(doc.groups.flatMap((g) => g.rules.flatMap((r) => [...r.expr.matchAll(/\b(flowgate_[a-z0-9_]+)/g)].map((m) => m[1] as string))));
    expect(names.size).toBe(6);
    const sources = spawnSync('grep', ['-rhoE', "name: '(flowgate_[a-z0-9_]+)'", join(repoRoot, 'src'), join(repoRoot, 'filters')], { encoding: 'utf8' }).stdout;
    for (const n of names) expect(sources, n).toContain(`name: '${n}'`);
  });
});
