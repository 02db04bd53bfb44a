import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, test } from 'vitest';
import { freePorts } from '../harness/ports.js';
import { waitFor } from '../harness/process.js';
import { repoRoot } from '../harness/venv.js';

/**
 * The README's first command, from a fresh clone of this repository: it installs what the clone lacks, brings
 * up MLflow, the demo model (two versions under `mlflow models serve`), the control plane and Envoy, and prints
 * curl commands. Every printed command is run and must answer as the text above it says; Ctrl-C must stop
 * everything it started.
 */

const clone = mkdtempSync(join(tmpdir(), 'flowgate-quickstart-clone-'));
let output = '';
let child: ReturnType<typeof spawn> | undefined;

afterAll(async () => {
  // Ctrl-C is how the quickstart stops what it started; SIGKILL would orphan MLflow and the model servers.
  if (child?.pid !== undefined && child.exitCode === null) {
    child.kill('SIGINT');
    await waitFor('the quickstart to stop', () => (child?.exitCode !== null ? true : undefined), { timeoutMs: 30_000 }).catch(() => child?.kill('SIGKILL'));
  }
  rmSync(clone, { recursive: true, force: true });
});

function listening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

test('the quickstart from a fresh clone answers its printed curl commands and stops cleanly on Ctrl-C', async () => {
  execFileSync('git', ['clone', '--quiet', repoRoot, clone]);
  const [port, mlflowPort, v1, v2, llmPort, xds, admin, envoyAdmin, filters] = (await freePorts(9)) as [number, number, number, number, number, number, number, number, number];
  child = spawn(
    'bash',
    [
      'scripts/quickstart.sh',
      '--port',
      String(port),
      '--mlflow-port',
      String(mlflowPort),
      '--model-ports',
      `${v1},${v2}`,
      '--llm-port',
      String(llmPort),
      '--xds-port',
      String(xds),
      '--admin-port',
      String(admin),
      '--envoy-admin-port',
      String(envoyAdmin),
      '--filters-port',
      String(filters),
      '--poll-interval',
      '1000',
    ],
    { cwd: clone, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  child.stdout?.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (output += d.toString()));
  await waitFor('the quickstart to print its commands', () => (output.includes('Ctrl-C stops everything') ? true : undefined), {
    timeoutMs: 600_000,
    intervalMs: 500,
    describe: () => output.slice(-4000),
  });

  const commands = output
    .split('\n')
    .filter((l) => l.startsWith('  curl '))
    .map((l) => l.trim());
  expect(commands.length).toBe(11);
  const run = (cmd: string): string => spawnSync('bash', ['-c', cmd], { encoding: 'utf8', timeout: 30_000, cwd: clone }).stdout;

  const [split, pinVersion, pinAlias, notLive, moveAlias, llmChat, llmStream, llmModels, metrics, nodes, ir] = commands as [string, string, string, string, string, string, string, string, string, string, string];
  // The LLM demo through the OpenAI API: curl, then the printed Python and Node SDK commands.
  expect(JSON.parse(run(llmChat))).toMatchObject({ object: 'chat.completion', model: 'support-bot/1', choices: [{ message: { content: '[v1] hello from curl' } }] });
  expect(run(llmStream)).toMatch(/^data: \{"id":"chatcmpl-[\s\S]*\[v1\] hello from curl[\s\S]*data: \[DONE\]\n\n$/);
  expect((JSON.parse(run(llmModels)) as { data: { id: string }[] }).data.map((m) => m.id).sort()).toEqual(['support', 'support-bot']);
  const sdkCommands = output
    .split('\n')
    .filter((l) => l.startsWith('  .venv/bin/python -c') || l.startsWith('  node --input-type=module'))
    .map((l) => l.trim());
  expect(sdkCommands).toHaveLength(2);
  expect(run(sdkCommands[0] ?? '').trim()).toBe('[v1] hello from Python');
  expect(run(sdkCommands[1] ?? '').trim()).toBe('[v1] hello from Node');
  const first = run(split);
  expect(first).toMatch(/^HTTP\/1\.1 200/);
  expect(first).toMatch(/x-flowgate-model-version: [12]/);
  expect(first).toMatch(/"version_label": "v[12]"/);
  // The embedded filter service counted the request (the quickstart model has a per-second limit).
  expect(first).toMatch(/ratelimit-limit: 100/i);
  expect(run(pinVersion)).toMatch(/x-flowgate-model-version: 2[\s\S]*"version_label": "v2"/);
  expect(run(pinAlias)).toMatch(/x-flowgate-model-version: 1[\s\S]*"version_label": "v1"/);
  expect(run(notLive)).toMatch(/^HTTP\/1\.1 404[\s\S]*"error":"version_not_live"/);
  expect(run(metrics)).toContain('flowgate_model_live_weight{model="fraud-detector",version="1"} 90');
  expect(run(nodes)).toContain('quickstart-envoy');
  expect(JSON.parse(run(ir))).toMatchObject({ models: [{ name: 'fraud-detector' }, { name: 'support-bot', llm: { kind: 'mlflow' } }] });
  expect(run(moveAlias).trim()).toBe('{}');
  await waitFor('traffic to follow the champion alias to v2', () => (/x-flowgate-model-version: 2/.test(run(pinAlias)) ? true : undefined), { timeoutMs: 15_000 });

  child.kill('SIGINT');
  await waitFor('the quickstart to exit', () => (child?.exitCode !== null ? true : undefined), { timeoutMs: 30_000 });
  for (const p of [port, mlflowPort, v1, v2, llmPort, xds, admin, envoyAdmin, filters]) expect(await listening(p), `port ${p} still listening`).toBe(false);
}, 900_000);
