import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MlflowClient } from '../../src/registry/mlflow-client.js';
import { RegistryPoller } from '../../src/registry/poller.js';
import { registerPrompt, setPromptAlias, startMlflow, type MlflowServer } from '../harness/mlflow.js';

/**
 * MLflow's Prompt Registry read by MlflowClient from a real tracking server, the prompts registered with
 * mlflow.genai.register_prompt: MLflow's searches hide prompts unless the filter names the prompt tag, so the
 * client must look for them there, by name (the policy's) or all at once.
 */

let mlflow: MlflowServer;
let client: MlflowClient;

beforeAll(async () => {
  mlflow = await startMlflow({ name: 'mlflow-prompts-test' });
  client = new MlflowClient({ trackingUri: mlflow.uri });
  await mlflow.admin.createRegisteredModel('plain-model');
  await registerPrompt(mlflow.uri, 'greeting', 'Hello {{ name }}.', 'production');
  await registerPrompt(mlflow.uri, 'greeting', 'Hi {{name}}!');
  await registerPrompt(mlflow.uri, 'chatty', [{ role: 'system', content: 'You are {{style}}.' }, { role: 'user', content: '{{q}}' }]);
}, 120_000);

afterAll(async () => {
  await mlflow?.stop();
});

describe('prompts from MLflow', () => {
  it('named prompts come with their versions, templates, types and aliases, beside named models', async () => {
    const snapshot = await client.fetchSnapshot(['plain-model', 'greeting', 'chatty', 'absent']);
    expect([...snapshot.models.keys()]).toEqual(['chatty', 'greeting', 'plain-model']);
    expect(snapshot.prompts.get('greeting')).toEqual({
      name: 'greeting',
      aliases: { production: '1' },
      versions: [
        { version: '1', type: 'text', template: 'Hello {{ name }}.' },
        { version: '2', type: 'text', template: 'Hi {{name}}!' },
      ],
    });
    expect(snapshot.prompts.get('chatty')?.versions[0]?.type).toBe('chat');
    expect(JSON.parse(snapshot.prompts.get('chatty')?.versions[0]?.template ?? '[]')).toEqual([{ role: 'system', content: 'You are {{style}}.' }, { role: 'user', content: '{{q}}' }]);
    expect(snapshot.prompts.has('plain-model')).toBe(false);
  });

  it('a full snapshot holds every prompt; one read by name (a webhook) reads a prompt too', async () => {
    const all = await client.fetchSnapshot();
    expect([...all.prompts.keys()]).toEqual(['chatty', 'greeting']);
    expect(all.models.has('plain-model')).toBe(true);
    expect((await client.fetchModel('greeting'))?.versions.map((v) => v.version).sort()).toEqual(['1', '2']);
    expect((await client.listRegisteredModels()).map((m) => m.name)).toEqual(['plain-model']);
  });

  it('moving the alias shows in the next read of the prompt', async () => {
    const poller = new RegistryPoller({ client, intervalMs: 60_000, names: () => ['greeting'] });
    await poller.start();
    expect(poller.current?.prompts.get('greeting')?.aliases).toEqual({ production: '1' });
    await setPromptAlias(mlflow.uri, 'greeting', 'production', '2');
    const outcome = await poller.refreshModel('greeting');
    expect(outcome).toMatchObject({ result: 'merged', changed: true, present: true });
    expect(poller.current?.prompts.get('greeting')?.aliases).toEqual({ production: '2' });
    await poller.stop();
  });
});
