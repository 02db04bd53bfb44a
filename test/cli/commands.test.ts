import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { cliArgs, startFlowgate } from '../harness/flowgate.js';
import { repoRoot } from '../harness/venv.js';

/** The CLI as a user runs it: exit codes, stdout and stderr of validate, render and --help. */

function flowgate(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const [cmd, argv] = cliArgs(args);
  const r = spawnSync(cmd, argv, { cwd: repoRoot, encoding: 'utf8', env: { ...process.env, MLFLOW_TRACKING_URI: '' } });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

const QUICKSTART_POLICY = join(repoRoot, 'examples', 'quickstart', 'policy');
const QUICKSTART_REGISTRY = join(repoRoot, 'examples', 'quickstart', 'registry.json');

describe('flowgate validate', () => {
  test('a valid directory exits 0', () => {
    const r = flowgate('validate', QUICKSTART_POLICY);
    expect(r.status).toBe(0);
    expect(r.stderr).toContain('valid (3 files, 2 models, 0 consumers)');
  });

  test('an invalid directory prints file:line:col: message lines and exits 1', () => {
    const dir = mkdtempSync(join(tmpdir(), 'flowgate-validate-'));
    writeFileSync(join(dir, 'm.yaml'), 'kind: Model\nname: m\nupstream: { addressTemplate: "h:1" }\ntraffic:\n  stable: { alias: a }\n  canary: { alias: b, wieght: 5 }\n');
    writeFileSync(join(dir, 'g.yaml'), 'kind: Gateway\nlisteners: [\n');
    const r = flowgate('validate', dir);
    expect(r.status).toBe(1);
    const lines = r.stdout.trim().split('\n');
    expect(lines.length).toBeGreaterThanOrEqual(2);
    for (const line of lines) expect(line).toMatch(new RegExp(`^${dir}/[gm]\\.yaml:\\d+:\\d+: `));
    expect(r.stdout).toContain(`${dir}/m.yaml:6:23: traffic.canary.wieght: unknown key`);
  });

  test('with a registry, a registered model that does not exist is an error at its line', () => {
    const dir = mkdtempSync(join(tmpdir(), 'flowgate-validate-'));
    writeFileSync(join(dir, 'm.yaml'), 'kind: Model\nname: other-model\nupstream: { addressTemplate: "h:1" }\ntraffic: { stable: { alias: a } }\n');
    const r = flowgate('validate', dir, '--registry', QUICKSTART_REGISTRY);
    expect(r.status).toBe(1);
    expect(r.stdout).toMatch(/m\.yaml:2:\d+: name: registered model 'other-model' does not exist/);
  });
});

describe('flowgate render', () => {
  test('prints the Envoy resources of the quickstart policy and registry', () => {
    const r = flowgate('render', '--policy', QUICKSTART_POLICY, '--registry', QUICKSTART_REGISTRY);
    expect(r.status).toBe(0);
    const out = JSON.parse(r.stdout) as { clusters: { name: string }[]; endpoints: unknown[]; listeners: { name: string }[]; routes: unknown[]; live: unknown };
    expect(out.clusters.map((c) => c.name)).toEqual(['model_fraud-detector_v1', 'model_fraud-detector_v2', 'model_support-bot_v1', 'flowgate_llm_unrouted', 'flowgate_filters']);
    expect(out.endpoints).toHaveLength(3);
    expect(out.listeners.map((l) => l.name)).toEqual(['public']);
    expect(out.live).toEqual({
      'fraud-detector': [expect.objectContaining({ version: '1', weight: 90 }), expect.objectContaining({ version: '2', weight: 10 })],
      'support-bot': [expect.objectContaining({ version: '1', weight: 100 })],
    });
  });

  test('shows which prompt version each model renders, and refuses a prompt alias the registry lacks', () => {
    const dir = join(import.meta.dirname, '..', 'ir', 'testdata', 'llm-prompts');
    const r = flowgate('render', '--policy', join(dir, 'policy'), '--registry', join(dir, 'registry.yaml'));
    expect(r.status).toBe(0);
    const out = JSON.parse(r.stdout) as { prompts: unknown };
    expect(out.prompts).toEqual({ summarizer: { prompt: 'summarize-chat', version: '1' }, support: { prompt: 'support-system', version: '2', alias: 'production' } });
    expect(r.stderr).toContain('prompt: model support: support-system/2 (alias production)');
    const registry = join(mkdtempSync(join(tmpdir(), 'flowgate-render-prompts-')), 'registry.yaml');
    writeFileSync(registry, readFileSync(join(dir, 'registry.yaml'), 'utf8').replace('aliases: { production: 2 }', 'aliases: { staging: 2 }'));
    const refused = flowgate('render', '--policy', join(dir, 'policy'), '--registry', registry);
    expect(refused.status).toBe(1);
    expect(refused.stderr).toMatch(/models\.yaml:\d+:\d+: llm\.prompt\.alias: prompt 'support-system' has no alias 'production'/);
  });

  test('prints the very snapshot version `serve` publishes for the same inputs, the filter policy included', async () => {
    const r = flowgate('render', '--policy', QUICKSTART_POLICY, '--registry', QUICKSTART_REGISTRY);
    const out = JSON.parse(r.stdout) as { version: string; filterPolicy: { policy_json: { schema: number; models: { name: string }[] } }[] };
    expect(out.filterPolicy[0]?.policy_json.models.map((m) => m.name)).toEqual(['fraud-detector', 'support-bot']);
    const serve = await startFlowgate({ policyDir: QUICKSTART_POLICY, registryFile: QUICKSTART_REGISTRY, name: 'flowgate-render-versions' });
    try {
      const served = (await (await fetch(`${serve.adminUrl}/debug/snapshot`)).json()) as { versions: Record<string, string> };
      expect(served.versions.ads).toBe(out.version);
      const grpc = JSON.parse(flowgate('render', '--policy', QUICKSTART_POLICY, '--registry', QUICKSTART_REGISTRY, '--mode', 'grpc').stdout) as { version: string };
      expect(grpc.version).not.toBe(out.version);
      // The gRPC mode is built once an Envoy of that mode connects (test/e2e/xds-modes.test.ts compares it then).
      expect(served.versions.grpc).toBeUndefined();
    } finally {
      await serve.stop();
    }
  });

  test('without a registry it is a usage error (exit 2)', () => {
    const r = flowgate('render', '--policy', QUICKSTART_POLICY);
    expect(r.status).toBe(2);
    expect(r.stderr).toContain('--mlflow-uri or --registry');
  });
});

describe('help and usage', () => {
  test.each(['serve', 'filters', 'validate', 'render', 'status', 'bootstrap'])('flowgate %s --help describes its options', (name) => {
    const r = flowgate(name, '--help');
    expect(r.status).toBe(0);
    expect(r.stdout).toContain(`flowgate ${name}`);
    expect(r.stdout).toContain('--config');
  });

  test('an unknown option is a usage error', () => {
    const r = flowgate('serve', '--policy', 'x', '--frobnicate');
    expect(r.status).toBe(2);
  });
});
