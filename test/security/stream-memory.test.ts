import { createHash } from 'node:crypto';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { STREAM_ENTRY_BYTES } from '../../filters/extproc/buffer-budget.js';
import { waitFor } from '../harness/process.js';
import { registerSecrets } from '../harness/secrets.js';
import { startEchoUpstream, startStallingUpstream, type EchoUpstream, type StallingUpstream } from '../harness/upstreams.js';
import { jsonOf, rawRequest, sample, startStack, type GatewayStack, type RawAnswer } from './stack.js';

/**
 * Issue 8, item 15: each ext_proc exchange could hold up to 8 MB of body with no limit on their sum, so
 * enough slow answers at once exhausted the filter service's memory. Through real Envoy, with the budget set
 * on the command line: while held bodies fill it, new exchanges get 503 and a JSON error (counted), an
 * exchange that would take it past the cap is cut, and everything held is given back when exchanges end.
 */

const KEY = 'holder-key-0123456789';
const sha = createHash('sha256').update(KEY).digest('hex');
const KIB = 1024;
// One held answer of 136 KiB plus its entry leaves less than another entry under the 160 KiB cap.
const CAP = 160 * KIB;
const HELD = 136 * KIB;

let slow: StallingUpstream;
let huge: StallingUpstream;
let echo: EchoUpstream;
let stack: GatewayStack;

const buffered = (): Promise<number> => sample(stack.flowgate, 'flowgate_filter_buffered_bytes');
const refusals = (phase: string): Promise<number> => sample(stack.flowgate, 'flowgate_filter_buffer_refusals_total', { phase });
const post = (model: string): Promise<RawAnswer> =>
  rawRequest(`${stack.base}/models/${model}`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-api-key': KEY }, body: '{"prompt":"hold this"}', timeoutMs: 20_000 });

beforeAll(async () => {
  registerSecrets(KEY);
  slow = await startStallingUpstream(HELD);
  huge = await startStallingUpstream(CAP + 64 * KIB);
  echo = await startEchoUpstream('echo');
  const model = (name: string, port: number): string =>
    `kind: Model\nname: ${name}\nupstream: { addressTemplate: "127.0.0.1:${port}" }\ntraffic: { stable: { version: "1" } }\naccess: { consumers: [holder] }\ntokenQuotas: [{ tokens: 100000000, per: hour }]\n`;
  stack = await startStack({
    name: 'stream-memory',
    models: ['slow', 'huge', 'quick'],
    readyPath: '/models/quick',
    readyHeaders: { 'x-api-key': KEY },
    extraArgs: ['--filters-max-buffered-bytes', String(CAP)],
    files: {
      'consumers.yaml': `kind: Consumer\nname: holder\napiKeys: [{ id: h-1, sha256: ${sha} }]\n`,
      'models.yaml': [model('slow', slow.port), model('huge', huge.port), model('quick', echo.port)].join('---\n'),
    },
  });
}, 120_000);

afterAll(async () => {
  slow?.release();
  huge?.release();
  await stack?.stop();
  for (const u of [slow, huge, echo]) await u?.close();
});

test('held bodies fill the budget: new exchanges get 503 until they are given back', async () => {
  await waitFor('nothing to be held', async () => ((await buffered()) === 0 ? true : undefined));
  const refusedBefore = await refusals('open');
  const held = post('slow');
  await waitFor('the slow answer to be held', async () => (slow.stalled === 1 && (await buffered()) >= HELD ? true : undefined), { describe: () => stack.flowgate.process.tail(20) });
  expect(await buffered()).toBeLessThanOrEqual(CAP);
  expect(CAP - (await buffered())).toBeLessThan(STREAM_ENTRY_BYTES);

  const refused = await post('quick');
  expect(refused.status).toBe(503);
  expect(jsonOf(refused)).toMatchObject({ error: 'filter_overloaded' });
  expect(await refusals('open')).toBe(refusedBefore + 1);

  slow.release();
  const answer = await held;
  expect(answer.status).toBe(200);
  expect(jsonOf(answer)).toHaveProperty('pad');
  await waitFor('the held bytes to be given back', async () => ((await buffered()) === 0 ? true : undefined));
  expect((await post('quick')).status).toBe(200);
});

test('an exchange that would take the budget past its cap is cut, and gives back what it held', async () => {
  await waitFor('nothing to be held', async () => ((await buffered()) === 0 ? true : undefined));
  const cutBefore = await refusals('response_body');
  const outcome = await post('huge').then(
    (a) => ({ status: a.status, complete: a.body.toString('utf8').endsWith('"}') }),
    () => ({ status: 0, complete: false }),
  );
  // Its headers were already on their way: the client sees a cut answer, never the whole body.
  expect(outcome.complete).toBe(false);
  expect(await refusals('response_body')).toBe(cutBefore + 1);
  await waitFor('the cut exchange to give its bytes back', async () => ((await buffered()) === 0 ? true : undefined));
  huge.release();
  expect((await post('quick')).status).toBe(200);
});
