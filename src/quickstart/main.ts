import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { cpSync, createWriteStream, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import YAML from 'yaml';
import { envoyBootstrapJson } from '../bootstrap/bootstrap.js';
import { DEFAULTS } from '../cli/defaults.js';
import { startControlPlane } from '../control/plane.js';

/**
 * The quickstart: a real MLflow server (sqlite), the demo model registered twice (champion v1, challenger v2),
 * the LLM demo (a deterministic MLflow ChatModel, `support-bot`, on the OpenAI-compatible API at /v1), each
 * version served by `mlflow models serve`, the Flowgate control plane, and Envoy in front. Prints the curl
 * and OpenAI SDK commands to try and stops everything on Ctrl-C. Its files (MLflow database, logs, an editable copy of
 * the policy) live in .flowgate/quickstart/ under the repository.
 *
 *   bash scripts/quickstart.sh [--port 10000] [--mlflow-port 5000] ...
 */

/** The repository: the nearest directory above this file with a package.json (from src/ or dist/src/). */
function findRepo(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json')) && dirname(dir) !== dir) dir = dirname(dir);
  return dir;
}
const repo = findRepo();
const venv = join(repo, '.venv', 'bin');

const { values } = parseArgs({
  options: {
    port: { type: 'string', default: String(DEFAULTS.listenerPort) },
    'mlflow-port': { type: 'string', default: '5000' },
    'model-ports': { type: 'string', default: '8001,8002' },
    'llm-port': { type: 'string', default: '8003' },
    'xds-port': { type: 'string', default: String(DEFAULTS.xdsPort) },
    'admin-port': { type: 'string', default: String(DEFAULTS.adminPort) },
    'envoy-admin-port': { type: 'string', default: String(DEFAULTS.envoyAdminPort) },
    'filters-port': { type: 'string', default: String(DEFAULTS.filtersPort) },
    'poll-interval': { type: 'string', default: '2000' },
    help: { type: 'boolean', short: 'h' },
  },
});
if (values.help) {
  process.stdout.write(
    'Usage: bash scripts/quickstart.sh [--port 10000] [--mlflow-port 5000] [--model-ports 8001,8002] [--xds-port 18000]\n' +
      '                                  [--admin-port 18090] [--envoy-admin-port 9901] [--filters-port 18081] [--poll-interval 2000]\n',
  );
  process.exit(0);
}

const port = Number(values.port);
const mlflowPort = Number(values['mlflow-port']);
const [v1Port, v2Port] = values['model-ports'].split(',').map(Number) as [number, number];
const llmPort = Number(values['llm-port']);
const xdsPort = Number(values['xds-port']);
const adminPort = Number(values['admin-port']);
const envoyAdminPort = Number(values['envoy-admin-port']);
const filtersPort = Number(values['filters-port']);
const model = 'fraud-detector';
const llmModel = 'support-bot';

const work = join(repo, '.flowgate', 'quickstart');
const children: ChildProcess[] = [];
let stopping = false;

function say(line: string): void {
  process.stdout.write(`[quickstart] ${line}\n`);
}

async function portFree(p: number): Promise<boolean> {
  return new Promise((done) => {
    const server = createServer();
    server.once('error', () => done(false));
    server.listen(p, '127.0.0.1', () => server.close(() => done(true)));
  });
}

function start(name: string, command: string, args: string[], env: Record<string, string> = {}): ChildProcess {
  const log = createWriteStream(join(work, `${name}.log`));
  const child = spawn(command, args, { cwd: work, env: { ...process.env, PATH: `${venv}:${process.env.PATH ?? ''}`, ...env }, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  child.stdout?.pipe(log);
  child.stderr?.pipe(log);
  child.on('exit', (code, signal) => {
    if (!stopping) {
      say(`${name} exited (${signal ?? code ?? '?'}); its log: ${join(work, `${name}.log`)}`);
      void shutdown(1);
    }
  });
  children.push(child);
  return child;
}

async function waitHttp(what: string, url: string, timeoutMs: number, init?: RequestInit): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const res = await fetch(url, { ...init, signal: AbortSignal.timeout(2000) });
      if (res.status < 500) return;
    } catch {
      // not up yet
    }
    if (stopping) throw new Error('stopping');
    if (Date.now() > deadline) throw new Error(`${what} did not come up at ${url} within ${timeoutMs / 1000}s; see the logs in ${work}`);
    await new Promise((r) => setTimeout(r, 300));
  }
}

let plane: Awaited<ReturnType<typeof startControlPlane>> | undefined;

let shuttingDown: Promise<never> | undefined;

/** Stops everything once; a second signal waits for the first stop instead of exiting half-way. */
function shutdown(code: number): Promise<never> {
  shuttingDown ??= (async (): Promise<never> => {
    stopping = true;
    say('stopping everything');
    await plane?.stop().catch(() => undefined);
    // Each child leads its own process group (mlflow starts workers), so the whole group is signalled.
    const signalAll = (signal: NodeJS.Signals): void => {
      for (const child of children) {
        if (child.pid === undefined) continue;
        try {
          process.kill(-child.pid, signal);
        } catch {
          // already gone
        }
      }
    };
    signalAll('SIGTERM');
    await new Promise((r) => setTimeout(r, 2000));
    signalAll('SIGKILL');
    process.exit(code);
  })();
  return shuttingDown;
}

function logModel(label: string, tags: Record<string, string>, aliases: string[], example = 'demo-model', name = model): string {
  const args = [join(repo, 'examples', example, 'log_model.py'), '--tracking-uri', `http://127.0.0.1:${mlflowPort}`, '--model-name', name, '--label', label];
  for (const [k, v] of Object.entries(tags)) args.push('--tag', `${k}=${v}`);
  for (const a of aliases) args.push('--alias', a);
  const run = spawnSync(join(venv, 'python'), args, { cwd: work, encoding: 'utf8' });
  const logFile = join(work, `log-model-${name}-${label}.log`);
  writeFileSync(logFile, `${run.stdout}\n${run.stderr}`);
  if (run.status !== 0) throw new Error(`logging the demo model ${name} ${label} failed; see ${logFile}`);
  const line = run.stdout.trim().split('\n').at(-1) ?? '';
  return (JSON.parse(line) as { version: string }).version;
}

async function main(): Promise<void> {
  process.on('SIGINT', () => void shutdown(0));
  process.on('SIGTERM', () => void shutdown(0));
  if (!existsSync(join(venv, 'envoy')) || !existsSync(join(venv, 'mlflow'))) {
    throw new Error('the Python venv is missing: run `bash scripts/setup.sh` first (scripts/quickstart.sh does)');
  }
  for (const [what, p] of [
    ['Envoy listener', port],
    ['MLflow', mlflowPort],
    ['model v1', v1Port],
    ['model v2', v2Port],
    ['LLM model', llmPort],
    ['xDS', xdsPort],
    ['admin', adminPort],
    ['Envoy admin', envoyAdminPort],
    ['filter service', filtersPort],
  ] as const) {
    if (!(await portFree(p))) throw new Error(`port ${p} (${what}) is in use; pick another with the quickstart's options (--help)`);
  }

  rmSync(work, { recursive: true, force: true });
  mkdirSync(work, { recursive: true });
  const policyDir = join(work, 'policy');
  cpSync(join(repo, 'examples', 'quickstart', 'policy'), policyDir, { recursive: true });
  const gatewayFile = join(policyDir, 'gateway.yaml');
  // Audit lines go to a file of their own, not between the instructions printed here.
  const gateway = readFileSync(gatewayFile, 'utf8').replace(/port: 10000/, `port: ${port}`).replace(/port: 18081/, `port: ${filtersPort}`);
  writeFileSync(gatewayFile, `${gateway}audit: { sink: file, path: ${join(work, 'audit.jsonl')} }\n`);

  const mlflowUri = `http://127.0.0.1:${mlflowPort}`;
  say(`starting MLflow on ${mlflowUri} (sqlite in ${work})`);
  start('mlflow', join(venv, 'mlflow'), [
    'server',
    '--host',
    '127.0.0.1',
    '--port',
    String(mlflowPort),
    '--workers',
    '1',
    '--backend-store-uri',
    `sqlite:///${join(work, 'mlflow.db')}`,
    '--default-artifact-root',
    join(work, 'artifacts'),
  ], { MLFLOW_SERVER_ENABLE_JOB_EXECUTION: 'false' });
  await waitHttp('MLflow', `${mlflowUri}/health`, 120_000);

  say(`registering the demo model "${model}": v1 (alias champion), v2 (alias challenger)`);
  const v1 = logModel('v1', { 'flowgate.address': `127.0.0.1:${v1Port}` }, ['champion']);
  const v2 = logModel('v2', { 'flowgate.address': `127.0.0.1:${v2Port}` }, ['challenger']);
  say(`registering the LLM demo "${llmModel}" (an MLflow ChatModel): v1 (alias champion)`);
  const llmVersion = logModel('v1', { 'flowgate.address': `127.0.0.1:${llmPort}` }, ['champion'], 'llm-model', llmModel);

  say(`serving ${model} v${v1} on :${v1Port} and v${v2} on :${v2Port}, ${llmModel} v${llmVersion} on :${llmPort} with mlflow models serve`);
  for (const [name, version, p] of [
    [model, v1, v1Port],
    [model, v2, v2Port],
    [llmModel, llmVersion, llmPort],
  ] as const) {
    start(`model-${name}-v${version}`, join(venv, 'mlflow'), ['models', 'serve', '-m', `models:/${name}/${version}`, '--env-manager', 'local', '--host', '127.0.0.1', '-p', String(p)], {
      MLFLOW_TRACKING_URI: mlflowUri,
    });
  }
  await Promise.all([
    waitHttp('model v1', `http://127.0.0.1:${v1Port}/ping`, 180_000),
    waitHttp('model v2', `http://127.0.0.1:${v2Port}/ping`, 180_000),
    waitHttp('the LLM model', `http://127.0.0.1:${llmPort}/ping`, 180_000),
  ]);

  say(`starting the control plane (xDS :${xdsPort}, admin :${adminPort}, filter service :${filtersPort}), watching ${policyDir}`);
  plane = await startControlPlane({
    policyDir,
    mlflow: { trackingUri: mlflowUri },
    pollIntervalMs: Number(values['poll-interval']),
    xds: { host: '127.0.0.1', port: xdsPort },
    admin: { host: '127.0.0.1', port: adminPort },
    filters: { host: '127.0.0.1', port: filtersPort },
  });

  say(`starting Envoy (listener :${port}, admin :${envoyAdminPort})`);
  const bootstrapFile = join(work, 'envoy.yaml');
  writeFileSync(
    bootstrapFile,
    YAML.stringify(envoyBootstrapJson({ nodeId: 'quickstart-envoy', nodeCluster: 'quickstart', xdsHost: '127.0.0.1', xdsPort, adminAddress: '127.0.0.1', adminPort: envoyAdminPort })),
  );
  start('envoy', join(venv, 'envoy'), ['-c', bootstrapFile, '--use-dynamic-base-id', '--log-level', 'warn']);
  const url = `http://127.0.0.1:${port}/models/${model}`;
  const body = '{"dataframe_records": [{"amount": 120.5}]}';
  await waitHttp('Envoy', url, 60_000, { method: 'POST', headers: { 'content-type': 'application/json' }, body });

  const curl = (extra: string): string => `curl -s -i ${extra}-H 'content-type: application/json' -d '${body}' ${url}`;
  const api = `http://127.0.0.1:${port}/v1`;
  const chatBody = (extra: string): string => `{"model": "${llmModel}", "messages": [{"role": "user", "content": "hello from curl"}]${extra}}`;
  const python = [
    'from openai import OpenAI',
    `client = OpenAI(base_url='${api}', api_key='none-needed')`,
    `print(client.chat.completions.create(model='${llmModel}', messages=[{'role': 'user', 'content': 'hello from Python'}]).choices[0].message.content)`,
  ].join('; ');
  const node = [
    "import OpenAI from 'openai'",
    `const client = new OpenAI({ baseURL: '${api}', apiKey: 'none-needed' })`,
    `const stream = await client.chat.completions.create({ model: 'support', stream: true, messages: [{ role: 'user', content: 'hello from Node' }] })`,
    "for await (const chunk of stream) process.stdout.write(chunk.choices[0]?.delta?.content ?? '')",
    "console.log()",
  ].join('; ');
  process.stdout.write(
    [
      '',
      'Flowgate quickstart is up. Try:',
      '',
      `  # 90% of requests go to the champion (v${v1}), 10% to the challenger (v${v2}); see x-flowgate-model-version`,
      '  # (the filter service counts every caller: see the ratelimit-* headers; over 100 per second is a 429)',
      `  ${curl('')}`,
      '',
      '  # pin a version or an alias',
      `  ${curl(`-H 'x-model-version: ${v2}' `)}`,
      `  ${curl("-H 'x-model-alias: champion' ")}`,
      '',
      '  # a version that is not live gets a 404 with the live versions',
      `  ${curl("-H 'x-model-version: 99' ")}`,
      '',
      '  # move the champion alias in MLflow: traffic follows within two poll intervals',
      `  curl -s -X POST ${mlflowUri}/api/2.0/mlflow/registered-models/alias -H 'content-type: application/json' -d '{"name":"${model}","alias":"champion","version":"${v2}"}'`,
      '',
      `  # the LLM demo on the OpenAI-compatible API: routed by the body's "model" (answers name the version served)`,
      `  curl -s ${api}/chat/completions -H 'content-type: application/json' -d '${chatBody('')}'`,
      `  curl -s -N ${api}/chat/completions -H 'content-type: application/json' -d '${chatBody(', "stream": true')}'`,
      `  curl -s ${api}/models`,
      '',
      '  # the official OpenAI SDKs, pointed at Flowgate (any api_key: this demo model has no access rule)',
      `  .venv/bin/python -c "${python}"`,
      `  node --input-type=module -e "${node}"`,
      '',
      `  # the control plane: metrics, connected Envoys, the resolved gateway`,
      `  curl -s http://127.0.0.1:${adminPort}/metrics | grep flowgate_model`,
      `  curl -s http://127.0.0.1:${adminPort}/debug/nodes`,
      `  curl -s http://127.0.0.1:${adminPort}/debug/ir`,
      '',
      `Edit the policy in ${policyDir} and it applies live (bad edits are rejected, see the log).`,
      `MLflow UI: ${mlflowUri}   Logs: ${work}`,
      'Ctrl-C stops everything.',
      '',
    ].join('\n'),
  );
  await new Promise<void>(() => undefined);
}

main().catch((err: unknown) => {
  process.stderr.write(`[quickstart] ${err instanceof Error ? err.message : String(err)}\n`);
  void shutdown(1);
});
