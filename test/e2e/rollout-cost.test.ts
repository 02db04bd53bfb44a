import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startLlmGateway, type LlmGateway } from '../harness/llm-gateway.js';
import { startLlmUpstream, type LlmUpstream } from '../harness/llm-upstream.js';
import { startMlflow, type MlflowServer } from '../harness/mlflow.js';
import { waitFor } from '../harness/process.js';
import { servedRollout, versionTags } from '../harness/rollouts.js';

/**
 * A rollout judged on cost per request, end to end: a real MLflow, `flowgate serve` with its filter service,
 * real Envoy, and the official openai SDK as the client. The LLM model's challenger answers with five times
 * the tokens of the champion at the same prices, so it costs five times as much: the filter service prices
 * every answer, hands Envoy the cost as dynamic metadata, the access log carries it to the control plane's
 * windows, and the rollout is rolled back with the measured costs tagged on the version in MLflow.
 */

const INTERVAL_MS = 3000;

let mlflow: MlflowServer;
let gateway: LlmGateway;
let cheap: LlmUpstream;
let dear: LlmUpstream;

beforeAll(async () => {
  mlflow = await startMlflow();
  cheap = await startLlmUpstream({ name: 'cheap', behaviour: { usage: { promptTokens: 10, completionTokens: 10 } } });
  dear = await startLlmUpstream({ name: 'dear', behaviour: { usage: { promptTokens: 50, completionTokens: 50 } } });
  await mlflow.admin.createRegisteredModel('bot');
  for (const u of [cheap, dear]) await mlflow.admin.createModelVersion({ name: 'bot', source: 's3://models/bot', tags: { 'flowgate.address': `127.0.0.1:${u.port}` } });
  await mlflow.admin.setAlias('bot', 'champion', '1');
  gateway = await startLlmGateway({
    name: 'flowgate-rollout-cost',
    files: () => ({
      'bot.yaml': `kind: Model
name: bot
upstream: { versionTag: flowgate.address }
traffic: { stable: { alias: champion } }
llm: { pricing: { inputPer1M: 1000, outputPer1M: 2000, currency: USD } }
---
kind: Rollout
model: bot
canary: { version: 2 }
interval: ${INTERVAL_MS}ms
steps: [50]
threshold: 1
minRequests: 3
inconclusiveLimit: 5
onSuccess: pause
metrics:
  - { name: error_rate, max: 5 }
  - { name: cost_per_request, relative: true, max: 1.5 }
`,
    }),
    registry: { mlflowUri: mlflow.uri },
    pollIntervalMs: 500,
    extraArgs: ['--rollout-tick', '250ms'],
    readyModel: 'bot',
    readyTimeoutMs: 60_000,
  });
}, 180_000);

afterAll(async () => {
  await gateway?.stop();
  await mlflow?.stop();
  for (const u of [cheap, dear]) await u?.close();
});

describe('a rollout bounded by cost per request', () => {
  test('a canary five times as dear is rolled back, with both costs tagged in MLflow', async () => {
    const client = new OpenAI({ baseURL: `${gateway.base}/v1`, apiKey: 'unused-key', maxRetries: 0 });
    await waitFor('the canary serving', async () => ((await servedRollout(gateway.flowgate.adminUrl, 'bot'))?.liveCanary ?? 0) > 0 ? true : undefined, { timeoutMs: 30_000 });
    let running = true;
    const served = new Set<string>();
    const load = (async () => {
      while (running) {
        const answer = await client.chat.completions.create({ model: 'bot', messages: [{ role: 'user', content: 'what does this cost?' }] }).withResponse();
        served.add(answer.response.headers.get('x-flowgate-model-version') ?? '');
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    })();
    try {
      const tags = await waitFor(
        'the rollback tagged in MLflow',
        async () => {
          const t = await versionTags(mlflow.uri, 'bot', '2');
          // A state is written phase first and weight last (writeOrder): a failed phase with weight 0 is the whole
          // state, reason and the check's numbers included.
          return t['flowgate.rollout.phase'] === 'failed' && t['flowgate.rollout.weight'] === '0' ? t : undefined;
        },
        { timeoutMs: 60_000, intervalMs: 500 },
      );
      expect(served).toEqual(new Set(['1', '2']));
      const reason = tags['flowgate.rollout.reason'] ?? '';
      expect(reason).toContain('cost_per_request');
      // The champion's answers cost 10 x 1000 + 10 x 2000 = 30,000 per million tokens (0.03 USD); the challenger's five times that.
      const check = JSON.parse(tags['flowgate.rollout.last_check'] ?? '{}') as { canary?: { costPerRequest?: number }; stable?: { costPerRequest?: number } };
      expect(check.stable?.costPerRequest).toBeCloseTo(0.03, 6);
      expect(check.canary?.costPerRequest).toBeCloseTo(0.15, 6);
      await waitFor('weight 0 served', async () => ((await servedRollout(gateway.flowgate.adminUrl, 'bot'))?.weight === 0 ? true : undefined), { timeoutMs: 10_000 });
    } finally {
      running = false;
      await load;
    }
  }, 120_000);
});
