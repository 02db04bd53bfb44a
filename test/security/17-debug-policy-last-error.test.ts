import { mkdtempSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { startFlowgate, type FlowgateProcess } from '../harness/flowgate.js';
import { waitFor } from '../harness/process.js';

/**
 * Item 17: /debug/policy must not keep an old edit's lastError once the files on disk say what serves again.
 * The reproduction: the registry loses the model the serving policy names (an alert, the policy keeps
 * serving), an edit is then rejected for naming it, and the edit is reverted. Before the fix, the reverted
 * files were checked against the registry like a new edit, rejected again, and /debug/policy kept showing an
 * error although the files were exactly the serving policy.
 */

let dir: string;
let flowgate: FlowgateProcess;
const modelFile = (): string => join(dir, 'policy', 'm.yaml');
const MODEL = `kind: Model
name: scorer
upstream: { addressTemplate: "127.0.0.1:9" }
traffic:
  stable: { version: "1" }
  canary: { version: "2", weight: 10 }
`;
const registry = (name: string): string => JSON.stringify({ models: [{ name, versions: [{ version: '1' }, { version: '2' }] }] });

interface DebugPolicy {
  lastError: { message: string }[] | null;
  hash: string | null;
}
const debugPolicy = async (): Promise<DebugPolicy> => (await (await fetch(`${flowgate.adminUrl}/debug/policy`)).json()) as DebugPolicy;
const reloads = async (): Promise<number> => {
  let total = 0;
  for (const result of ['applied', 'rejected', 'unchanged']) total += (await flowgate.metric(`flowgate_policy_reloads_total{result="${result}"}`)) ?? 0;
  return total;
};

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'flowgate-sec17-'));
  mkdirSync(join(dir, 'policy'));
  writeFileSync(join(dir, 'policy', 'gateway.yaml'), 'kind: Gateway\nlisteners: [{ name: public, address: 127.0.0.1, port: 10000 }]\n');
  writeFileSync(modelFile(), MODEL);
  writeFileSync(join(dir, 'registry.json'), registry('scorer'));
  flowgate = await startFlowgate({ policyDir: join(dir, 'policy'), registryFile: join(dir, 'registry.json'), name: 'flowgate-sec17' });
}, 60_000);

afterAll(async () => {
  await flowgate?.stop();
});

test('reverting a rejected edit clears lastError, even while the registry lacks the serving policy\'s model', async () => {
  const serving = (await debugPolicy()).hash;
  expect(serving).toMatch(/^[0-9a-f]{64}$/);
  // The registry loses the model: the serving policy keeps serving, with an alert.
  writeFileSync(join(dir, 'registry.json'), registry('renamed-in-mlflow'));
  await waitFor('the unknown_registered_model alert', async () =>
    (await flowgate.metric('flowgate_model_alerts{model="scorer",code="unknown_registered_model"}')) === 1 ? true : undefined,
  );
  // An edit now is rejected: it names a model MLflow does not have.
  writeFileSync(modelFile(), MODEL.replace('weight: 10', 'weight: 20'));
  const rejected = await waitFor('the edit to be rejected', async () => {
    const p = await debugPolicy();
    return p.lastError ? p : undefined;
  });
  expect(rejected.hash).toBe(serving);
  expect(rejected.lastError?.[0]?.message).toMatch(/does not exist in the MLflow registry/);

  // Reverting the edit: the files are the serving policy again.
  const before = await reloads();
  writeFileSync(modelFile(), readFileSync(modelFile(), 'utf8').replace('weight: 20', 'weight: 10'));
  await waitFor('the reload of the reverted files', async () => ((await reloads()) > before ? true : undefined));
  const after = await debugPolicy();
  expect(after.hash).toBe(serving);
  expect(after.lastError).toBeNull();
  expect(await flowgate.metric('flowgate_policy_issues')).toBe(0);
  // The registry fault is still reported, as what it is: an alert of the serving policy.
  expect(await flowgate.metric('flowgate_model_alerts{model="scorer",code="unknown_registered_model"}')).toBe(1);
});
