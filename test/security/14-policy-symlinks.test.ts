import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { loadPolicyDir } from '../../src/policy/load.js';
import { cliArgs } from '../harness/flowgate.js';
import { repoRoot } from '../harness/venv.js';

/**
 * Item 14: loading a policy directory never follows a symlink out of it. A link to a Consumer file elsewhere
 * must not add a consumer (here, one with role admin), a link to /etc/passwd must not have its content echoed
 * in an error, and a linked directory outside is not walked. Kubernetes ConfigMap layouts (files linked into
 * the directory's own `..data`) keep loading.
 */

const GATEWAY = 'kind: Gateway\nlisteners: [{ name: public, port: 10000 }]\n';
const MODEL = 'kind: Model\nname: m\nupstream: { addressTemplate: "10.0.0.1:8080" }\ntraffic: { stable: { version: "1" } }\naccess: { roles: [admin] }\n';
const INTRUDER = `kind: Consumer\nname: intruder\nroles: [admin]\napiKeys: [{ id: k, sha256: ${'a'.repeat(64)} }]\n`;

function policyDir(): { dir: string; outside: string } {
  const base = mkdtempSync(join(tmpdir(), 'flowgate-sec14-'));
  const dir = join(base, 'policy');
  const outside = join(base, 'elsewhere');
  mkdirSync(dir);
  mkdirSync(outside);
  writeFileSync(join(dir, 'gateway.yaml'), GATEWAY);
  writeFileSync(join(dir, 'm.yaml'), MODEL);
  return { dir, outside };
}

describe('symlinks out of the policy directory', () => {
  test('a linked Consumer file from outside is refused, and no consumer is loaded from it', async () => {
    const { dir, outside } = policyDir();
    writeFileSync(join(outside, 'intruder.yaml'), INTRUDER);
    symlinkSync(join(outside, 'intruder.yaml'), join(dir, 'consumer.yaml'));
    const load = await loadPolicyDir(dir);
    expect(load.ok).toBe(false);
    if (load.ok) return;
    expect(load.issues.map((i) => [i.file, i.code])).toEqual([['consumer.yaml', 'io']]);
    expect(load.issues[0]?.message).toMatch(/leads outside the policy directory/);
    expect(JSON.stringify(load.issues)).not.toContain('intruder');
  });

  test('a link to /etc/passwd is refused without a byte of its content in the issue or the CLI output', async () => {
    const { dir } = policyDir();
    symlinkSync('/etc/passwd', join(dir, 'passwd.yaml'));
    const passwd = readFileSync('/etc/passwd', 'utf8');
    const firstEntry = passwd.split('\n')[0]!.split(':')[0]!;
    expect(firstEntry.length).toBeGreaterThan(0);
    const load = await loadPolicyDir(dir);
    expect(load.ok).toBe(false);
    if (load.ok) return;
    expect(load.issues.map((i) => i.file)).toEqual(['passwd.yaml']);
    expect(JSON.stringify(load.issues)).not.toContain(`${firstEntry}:`);
    const [cmd, args] = cliArgs(['validate', dir]);
    const r = spawnSync(cmd, args, { cwd: repoRoot, encoding: 'utf8' });
    expect(r.status).not.toBe(0);
    expect(r.stdout + r.stderr).toContain('passwd.yaml');
    expect(r.stdout + r.stderr).not.toContain(`${firstEntry}:`);
  });

  test('a linked directory outside is not walked', async () => {
    const { dir, outside } = policyDir();
    writeFileSync(join(outside, 'intruder.yaml'), INTRUDER);
    symlinkSync(outside, join(dir, 'shared'));
    const load = await loadPolicyDir(dir);
    expect(load.ok).toBe(false);
    if (load.ok) return;
    expect(load.issues.map((i) => i.file)).toEqual(['shared']);
    expect(load.issues[0]?.message).toMatch(/leads outside/);
  });

  test('a relative link that climbs out (../) is refused too', async () => {
    const { dir, outside } = policyDir();
    writeFileSync(join(outside, 'intruder.yaml'), INTRUDER);
    symlinkSync('../elsewhere/intruder.yaml', join(dir, 'sneaky.yaml'));
    const load = await loadPolicyDir(dir);
    expect(load.ok).toBe(false);
  });
});

describe('links that stay inside keep working', () => {
  test('a Kubernetes ConfigMap layout (files linked into ..data) loads', async () => {
    const { dir } = policyDir();
    const base = mkdtempSync(join(tmpdir(), 'flowgate-sec14-cm-'));
    const cm = join(base, 'policy');
    const stamp = join(cm, '..2026_12_01_00_00_00.000000001');
    mkdirSync(stamp, { recursive: true });
    writeFileSync(join(stamp, 'gateway.yaml'), GATEWAY);
    writeFileSync(join(stamp, 'm.yaml'), MODEL);
    symlinkSync('..2026_12_01_00_00_00.000000001', join(cm, '..data'));
    symlinkSync('..data/gateway.yaml', join(cm, 'gateway.yaml'));
    symlinkSync('..data/m.yaml', join(cm, 'm.yaml'));
    const load = await loadPolicyDir(cm);
    expect(load.ok, load.ok ? '' : JSON.stringify(load.issues)).toBe(true);
    if (load.ok) expect([...load.policy.models.keys()]).toEqual(['m']);
    // The same files without links load to the same policy.
    const plain = await loadPolicyDir(dir);
    expect(plain.ok && load.ok && plain.policy.hash === load.policy.hash).toBe(true);
  });

  test('a link to a file in a hidden directory of the policy directory loads', async () => {
    const { dir } = policyDir();
    mkdirSync(join(dir, '.shared'));
    writeFileSync(join(dir, '.shared', 'c.yaml'), INTRUDER.replace('intruder', 'team-bot').replace('[admin]', '[reader]'));
    symlinkSync('.shared/c.yaml', join(dir, 'bot.yaml'));
    const load = await loadPolicyDir(dir);
    expect(load.ok, load.ok ? '' : JSON.stringify(load.issues)).toBe(true);
    if (load.ok) expect([...load.policy.consumers.keys()]).toEqual(['team-bot']);
  });
});
