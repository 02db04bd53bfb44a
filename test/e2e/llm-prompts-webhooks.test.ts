import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { Header } from '../../src/contract/filter-wire.js';
import { makeCertificates } from '../harness/certs.js';
import { startEnvoy, type EnvoyProcess } from '../harness/envoy.js';
import { cliArgs, startFlowgate, type FlowgateProcess } from '../harness/flowgate.js';
import { startLlmUpstream, type LlmUpstream } from '../harness/llm-upstream.js';
import { registerPrompt, setPromptAlias, startMlflow, type MlflowServer } from '../harness/mlflow.js';
import { openaiClient } from '../harness/openai-clients.js';
import { freePorts } from '../harness/ports.js';
import { waitFor } from '../harness/process.js';
import { registerSecrets } from '../harness/secrets.js';
import { repoRoot } from '../harness/venv.js';

/**
 * A prompt alias moved in a real MLflow reaches the gateway through MLflow's webhook (`prompt_alias.created`,
 * registered by `flowgate webhooks register` with its default events, delivered over HTTPS with a test CA), not through a poll: Flowgate polls only
 * every 60 s here, and the poll counter stands still while the rendering changes.
 */

const run = promisify(execFile);
const PROMPT = 'hooked-prompt';

let mlflow: MlflowServer;
let upstream: LlmUpstream;
let flowgate: FlowgateProcess;
let envoy: EnvoyProcess;
let client: OpenAI;

const metric = async (sample: string): Promise<number> => (await flowgate.metric(sample)) ?? 0;
const promptVersion = async (): Promise<string | null> => {
  const { response } = await client.chat.completions.create({ model: 'hooked', messages: [{ role: 'user', content: 'hi' }] }).withResponse();
  return response.headers.get(Header.promptVersion);
};

beforeAll(async () => {
  const certs = makeCertificates({ webhook: 'IP:127.0.0.1,DNS:localhost' });
  const secret = randomBytes(24).toString('hex');
  const fernetKey = randomBytes(32).toString('base64url') + '=';
  registerSecrets(secret, fernetKey);
  mlflow = await startMlflow({ name: 'mlflow-prompts-webhooks', env: { MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS: 'true', MLFLOW_WEBHOOK_CACHE_TTL: '1', MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY: fernetKey }, trustCa: certs.ca });
  upstream = await startLlmUpstream({ name: 'prompts-webhooks' });
  await mlflow.admin.createRegisteredModel('hooked');
  await mlflow.admin.createModelVersion({ name: 'hooked', source: 's3://models/hooked/1' });
  await registerPrompt(mlflow.uri, PROMPT, 'First instructions.', 'production');
  await registerPrompt(mlflow.uri, PROMPT, 'Second instructions.');

  const webhook = certs.leaf('webhook');
  const [listener, filters, webhookPort] = (await freePorts(3)) as [number, number, number];
  const dir = mkdtempSync(join(tmpdir(), 'flowgate-prompts-webhooks-'));
  const secretFile = join(dir, 'webhook-secret');
  writeFileSync(secretFile, `${secret}\n`, { mode: 0o600 });
  const policyDir = join(dir, 'policy');
  mkdirSync(policyDir);
  writeFileSync(
    join(policyDir, 'policy.yaml'),
    `kind: Gateway
listeners: [{ name: llm, address: 127.0.0.1, port: ${listener} }]
filterService: { address: 127.0.0.1, port: ${filters}, timeout: 5s }
openai: { listener: llm }
---
kind: Model
name: hooked
upstream: { addressTemplate: "127.0.0.1:${upstream.port}" }
traffic: { stable: { version: 1 } }
llm: { prompt: { name: ${PROMPT}, alias: production } }
`,
  );
  flowgate = await startFlowgate({
    policyDir,
    mlflowUri: mlflow.uri,
    pollIntervalMs: 60_000,
    filtersPort: filters,
    name: 'flowgate-prompts-webhooks',
    extraArgs: ['--webhook-listen', `127.0.0.1:${webhookPort}`, '--webhook-secret-file', secretFile, '--webhook-tls-cert', webhook.cert, '--webhook-tls-key', webhook.key],
  });
  envoy = await startEnvoy({ nodeId: 'e2e-prompts-webhooks', nodeCluster: 'e2e', xdsHost: '127.0.0.1', xdsPort: flowgate.xdsPort });
  client = openaiClient(`http://127.0.0.1:${listener}/v1`);
  await waitFor('the prompted model', async () => ((await promptVersion().catch(() => null)) === `${PROMPT}/1` ? true : undefined), {
    timeoutMs: 60_000,
    describe: () => `${flowgate.process.tail(30)}\n${envoy.process.tail(30)}`,
  });
  const [cmd, argv] = cliArgs(['webhooks', 'register', '--mlflow-uri', mlflow.uri, '--url', `https://127.0.0.1:${webhookPort}`, '--secret-file', secretFile]);
  await run(cmd, argv, { cwd: repoRoot, env: { ...process.env, FLOWGATE_LOG_LEVEL: 'warn' } });
}, 240_000);

afterAll(async () => {
  await envoy?.stop();
  await flowgate?.stop();
  await upstream?.close();
  await mlflow?.stop();
});

describe('prompt webhooks', () => {
  test('a prompt alias move reaches the gateway through the webhook, with no poll in between', async () => {
    const polls = await metric('flowgate_registry_sync_total{result="ok"}');
    const merged = await metric('flowgate_registry_refresh_total{trigger="webhook",result="merged"}');
    await setPromptAlias(mlflow.uri, PROMPT, 'production', '2');
    await waitFor('the new prompt version', async () => ((await promptVersion()) === `${PROMPT}/2` ? true : undefined), {
      timeoutMs: 20_000,
      describe: () => `${flowgate.process.tail(20)}\n${mlflow.process.tail(20)}`,
    });
    expect(await metric('flowgate_registry_refresh_total{trigger="webhook",result="merged"}')).toBeGreaterThan(merged);
    expect(await metric('flowgate_registry_sync_total{result="ok"}')).toBe(polls);
    const accepted = flowgate.logLines().filter((l) => l.msg === 'webhook accepted; re-reading the model' && l.model === PROMPT && l.event === 'prompt_alias.created');
    expect(accepted.length).toBeGreaterThan(0);
    const last = upstream.received.at(-1)?.json as { messages: { role: string; content: string }[] };
    expect(last.messages[0]).toEqual({ role: 'system', content: 'Second instructions.' });
  }, 60_000);
});
