import { join } from 'node:path';
import { beforeAll, describe, expect, test } from 'vitest';
import { buildGatewayIR } from '../../src/ir/build.js';
import { loadPolicyDir } from '../../src/policy/load.js';
import type { Policy } from '../../src/policy/policy.js';
import { loadRegistryFile } from '../../src/registry/file.js';
import { registrySnapshotFrom } from '../../src/registry/snapshot.js';
import type { RegisteredModel, RegistrySnapshot } from '../../src/registry/types.js';

/**
 * Prompts joined in the IR (the llm-prompts golden case, its registry varied): a prompt, alias or version the
 * registry lacks is a policy issue at the field to fix and an alert; under a registry change the model keeps
 * the prompt version it served, and one that never had one is marked unavailable.
 */

const DIR = join(import.meta.dirname, 'testdata', 'llm-prompts');
let policy: Policy;
let registry: RegistrySnapshot;

beforeAll(async () => {
  const load = await loadPolicyDir(join(DIR, 'policy'));
  if (!load.ok) throw new Error('the llm-prompts policy does not load');
  policy = load.policy;
  registry = await loadRegistryFile(join(DIR, 'registry.yaml'));
});

const change = (edit: (m: RegisteredModel) => RegisteredModel | undefined): RegistrySnapshot =>
  registrySnapshotFrom([...registry.models.values()].flatMap((m) => edit(m) ?? []));
const support = (r: ReturnType<typeof buildGatewayIR>) => r.ir.models.find((m) => m.name === 'support')?.llm?.prompt;

describe('prompts in the IR', () => {
  test('the alias names the version; the registry snapshot reads prompts apart from models', () => {
    expect(registry.prompts.get('support-system')).toMatchObject({ aliases: { production: '2' }, versions: [{ version: '1', type: 'text' }, { version: '2', type: 'text' }] });
    expect(registry.prompts.has('support')).toBe(false);
    const built = buildGatewayIR(policy, registry);
    expect(built.issues).toEqual([]);
    expect(support(built)?.template).toMatchObject({ name: 'support-system', version: '2', alias: 'production' });
  });

  test('an alias the prompt lacks is an issue at llm.prompt.alias; the prior version is kept on a registry change', () => {
    const good = buildGatewayIR(policy, registry).ir;
    const noAlias = change((m) => (m.name === 'support-system' ? { ...m, aliases: {}, versions: m.versions.map((v) => ({ ...v, aliases: [] })) } : m));
    const built = buildGatewayIR(policy, noAlias, good);
    expect(built.issues).toEqual([expect.objectContaining({ path: 'llm.prompt.alias', message: "prompt 'support-system' has no alias 'production'" })]);
    const alert = built.ir.alerts.find((a) => a.code === 'prompt_unresolved' && a.model === 'support');
    expect(alert?.message).toContain('still serving support-system/2');
    expect(support(built)?.template?.version).toBe('2');
    expect(support(built)?.unavailable).toBeUndefined();
  });

  test('a prompt the registry never had leaves the model unavailable, not without its prompt', () => {
    const built = buildGatewayIR(policy, change((m) => (m.name === 'support-system' ? undefined : m)));
    expect(built.issues).toEqual([expect.objectContaining({ path: 'llm.prompt.name' })]);
    expect(support(built)).toMatchObject({ unavailable: "prompt 'support-system' does not exist in MLflow's Prompt Registry" });
    expect(support(built)?.template).toBeUndefined();
  });

  test('the alias moved: the next IR renders the new version', () => {
    const moved = buildGatewayIR(policy, change((m) => (m.name === 'support-system' ? { ...m, aliases: { production: '1' }, versions: m.versions.map((v) => ({ ...v, aliases: [] })) } : m)));
    expect(support(moved)?.template).toMatchObject({ version: '1', messages: [{ role: 'system', content: "You help {{tenant}}'s customers." }] });
  });

  test('a chat template that is not a list of messages is an issue', () => {
    const broken = change((m) =>
      m.name === 'summarize-chat' ? { ...m, versions: m.versions.map((v) => ({ ...v, tags: { ...v.tags, 'mlflow.prompt.text': '{"role": "system"}' } })) } : m,
    );
    const built = buildGatewayIR(policy, broken);
    expect(built.issues).toHaveLength(1);
    expect(built.issues[0]?.message).toContain('not a list of messages');
  });

  test('a Model whose registered model is a prompt is an issue', () => {
    const swapped = change((m) => (m.name === 'decorated' ? { ...m, tags: { 'mlflow.prompt.is_prompt': 'true' } } : m));
    const built = buildGatewayIR(policy, swapped);
    expect(built.issues).toHaveLength(1);
    expect(built.issues[0]?.message).toContain("'decorated' is a prompt of MLflow's Prompt Registry");
  });
});
