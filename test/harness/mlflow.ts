import { execFile, spawn } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { MlflowAdmin } from '../../src/registry/mlflow-admin.js';
import { freePort } from './ports.js';
import { startProcess, waitFor, type ManagedProcess } from './process.js';
import { repoRoot, venvBin } from './venv.js';

/**
 * A real MLflow tracking server (the mlflow wheel in .venv) on a loopback port with its own SQLite store,
 * that a test can stop, freeze and bring back on the same port with the same data; and `mlflow models
 * serve` for the demo models (the pyfunc one and the LLM ChatModel). Each command runs in its own process group, because both `mlflow server` and
 * `mlflow models serve` do their work in a uvicorn child that a signal to the parent alone can orphan.
 */

export interface MlflowServer {
  readonly uri: string;
  readonly port: number;
  /** Holds mlflow.db and artifacts/. */
  readonly dir: string;
  readonly admin: MlflowAdmin;
  /** The process now running (a new one after restart()). */
  readonly process: ManagedProcess;
  /** SIGTERM (SIGKILL after a grace period); the data stays for restart(). */
  stop(): Promise<void>;
  /** SIGKILL, no goodbye: what a crash looks like. */
  kill(): Promise<void>;
  /** Starts again on the same port and store (with `env` replacing the start's extra environment, if given); resolves when /health answers. */
  restart(env?: Record<string, string>): Promise<void>;
  /** SIGSTOP: the port stays open but nothing answers, so clients time out. */
  suspend(): void;
  resume(): void;
  /** Logs the demo model (examples/demo-model) as a new version of `name`. */
  logDemoModel(name: string, label: string, options?: LogModelOptions): Promise<LoggedModel>;
  /** Logs the LLM demo model (examples/llm-model, an MLflow ChatModel) as a new version of `name`. */
  logLlmModel(name: string, label: string, options?: LogModelOptions): Promise<LoggedModel>;
}

export interface LogModelOptions {
  /** Model version tags. */
  tags?: Record<string, string>;
  /** Aliases pointed at the new version. */
  aliases?: string[];
  /** Log the version with its model signature (the demo model only: log_model.py --signature). */
  signature?: boolean;
}

export interface LoggedModel {
  readonly name: string;
  readonly version: string;
  readonly runId: string;
  readonly source: string;
}

export interface ServedModel {
  readonly port: number;
  /** http://127.0.0.1:port */
  readonly url: string;
  readonly process: ManagedProcess;
  stop(): Promise<void>;
}

const run = promisify(execFile);

/** The environment MLflow commands run with: the venv first on PATH (models serve execs `uvicorn`), no telemetry. */
function mlflowEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    PATH: `${join(repoRoot, '.venv', 'bin')}:${process.env.PATH ?? ''}`,
    MLFLOW_DISABLE_TELEMETRY: 'true',
    DO_NOT_TRACK: 'true',
    ...extra,
  };
  delete env.MLFLOW_TRACKING_TOKEN;
  delete env.MLFLOW_TRACKING_USERNAME;
  delete env.MLFLOW_TRACKING_PASSWORD;
  return env;
}

/** Signals the whole process group a harness process leads; a group already gone is not an error. */
function signalGroup(proc: ManagedProcess, signal: NodeJS.Signals): void {
  const pid = proc.child.pid;
  if (pid === undefined) return;
  try {
    process.kill(-pid, signal);
  } catch {
    // ESRCH: every member has exited.
  }
}

/** Stops a process group: SIGTERM to all of it, SIGKILL after graceMs, and SIGKILL again for stragglers. */
async function stopGroup(proc: ManagedProcess, graceMs = 10_000): Promise<void> {
  signalGroup(proc, 'SIGCONT');
  signalGroup(proc, 'SIGTERM');
  const timer = setTimeout(() => signalGroup(proc, 'SIGKILL'), graceMs);
  await proc.exited;
  clearTimeout(timer);
  signalGroup(proc, 'SIGKILL');
}

const groups = new Set<ManagedProcess>();
process.on('exit', () => {
  for (const proc of groups) signalGroup(proc, 'SIGKILL');
});

function startGroup(name: string, args: string[], env: NodeJS.ProcessEnv, cwd: string): ManagedProcess {
  const proc = startProcess(name, venvBin('mlflow'), args, { env, cwd, detached: true });
  groups.add(proc);
  void proc.exited.then(() => {
    // The leader is gone; make sure its uvicorn child is too.
    signalGroup(proc, 'SIGKILL');
    groups.delete(proc);
  });
  return proc;
}

/** Resolves when GET `url` answers 200; fails at once if the process exits first, with its log. */
async function untilAnswering(what: string, proc: ManagedProcess, url: string, timeoutMs: number): Promise<void> {
  let answered = false;
  const exited = proc.exited.then((code) => {
    if (!answered) throw new Error(`${what}: exited with ${code} before answering\n--- log ---\n${proc.tail(40)}`);
  });
  try {
    const answers = async (): Promise<true | undefined> => ((await fetch(url, { signal: AbortSignal.timeout(2000) })).status === 200 ? true : undefined);
    await Promise.race([waitFor(what, answers, { timeoutMs, intervalMs: 250, describe: () => proc.tail(40) }), exited]);
  } finally {
    // From here on an exit is the caller's business (stop() causes one), not a failed start.
    answered = true;
  }
}

export interface MlflowServerOptions {
  readonly name?: string;
  /** Extra environment of the server (e.g. the MLFLOW_WEBHOOK_* settings). */
  readonly env?: Record<string, string>;
  /**
   * A CA certificate (PEM file) the server's outgoing HTTPS (webhook deliveries) trusts instead of the
   * certifi bundle. MLflow's webhook session ignores REQUESTS_CA_BUNDLE (it sets trust_env off against
   * proxies), and requests takes its bundle from certifi.where(); a sitecustomize on the server's
   * PYTHONPATH points that at the CA, as installing a private CA into the bundle would in a deployment.
   */
  readonly trustCa?: string;
  /** An MLflow SQLite store to start from (copied, so the original stays as it is): a prepared registry. */
  readonly seedDb?: string;
}

/** The environment that makes a Python process's requests/certifi trust only `ca`. */
function trustCaEnv(dir: string, ca: string): Record<string, string> {
  const site = join(dir, 'python-trust');
  mkdirSync(site, { recursive: true });
  writeFileSync(
    join(site, 'sitecustomize.py'),
    ['import os', 'import certifi', '', '_bundle = os.environ["FLOWGATE_TEST_CA_BUNDLE"]', 'certifi.where = lambda: _bundle', ''].join('\n'),
  );
  return { PYTHONPATH: site, FLOWGATE_TEST_CA_BUNDLE: ca };
}

/** Starts an MLflow tracking server with an empty registry; resolves when /health answers. */
export async function startMlflow(options: MlflowServerOptions = {}): Promise<MlflowServer> {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'flowgate-mlflow-'));
  if (options.seedDb) copyFileSync(options.seedDb, join(dir, 'mlflow.db'));
  const uri = `http://127.0.0.1:${port}`;
  const name = options.name ?? 'mlflow';
  const args = [
    'server',
    '--host',
    '127.0.0.1',
    '--port',
    String(port),
    '--workers',
    '1',
    '--backend-store-uri',
    `sqlite:///${join(dir, 'mlflow.db')}`,
    '--default-artifact-root',
    join(dir, 'artifacts'),
  ];
  // No job runner: it is for GenAI jobs, and it forks seven huey consumers that would compete for the CPUs.
  const envOf = (extra: Record<string, string>): NodeJS.ProcessEnv =>
    mlflowEnv({ MLFLOW_SERVER_ENABLE_JOB_EXECUTION: 'false', ...(options.trustCa ? trustCaEnv(dir, options.trustCa) : {}), ...extra });
  let env = envOf(options.env ?? {});
  let proc: ManagedProcess;
  const launch = async (): Promise<void> => {
    proc = startGroup(name, args, env, dir);
    await untilAnswering(`mlflow server on ${uri}`, proc, `${uri}/health`, 90_000);
  };
  await launch();
  return {
    uri,
    port,
    dir,
    admin: new MlflowAdmin({ trackingUri: uri }),
    get process() {
      return proc;
    },
    stop: () => stopGroup(proc),
    kill: () => stopGroup(proc, 0),
    restart: async (extra) => {
      await stopGroup(proc);
      if (extra) env = envOf(extra);
      await launch();
    },
    suspend: () => signalGroup(proc, 'SIGSTOP'),
    resume: () => signalGroup(proc, 'SIGCONT'),
    logDemoModel: (model, label, logOptions = {}) => logDemoModel(uri, model, label, logOptions),
    logLlmModel: (model, label, logOptions = {}) => logLlmModel(uri, model, label, logOptions),
  };
}

/** Runs examples/demo-model/log_model.py against `uri`; resolves with the version it registered. */
export function logDemoModel(uri: string, name: string, label: string, options: LogModelOptions = {}): Promise<LoggedModel> {
  return runLogModel('demo-model', uri, name, label, options);
}

/** Runs examples/llm-model/log_model.py (the echo ChatModel) against `uri`; resolves with the version it registered. */
export function logLlmModel(uri: string, name: string, label: string, options: LogModelOptions = {}): Promise<LoggedModel> {
  return runLogModel('llm-model', uri, name, label, options);
}

/** Both examples' log_model.py share one command line and print the registered version as their last line. */
async function runLogModel(example: string, uri: string, name: string, label: string, options: LogModelOptions): Promise<LoggedModel> {
  const args = [join(repoRoot, 'examples', example, 'log_model.py'), '--tracking-uri', uri, '--model-name', name, '--label', label];
  for (const [k, v] of Object.entries(options.tags ?? {})) args.push('--tag', `${k}=${v}`);
  for (const alias of options.aliases ?? []) args.push('--alias', alias);
  if (options.signature === true) args.push('--signature');
  // Its working directory is a scratch one: MLflow may leave files (mlruns/, mlartifacts/) where it runs.
  const cwd = mkdtempSync(join(tmpdir(), 'flowgate-log-model-'));
  try {
    const { stdout } = await run(venvBin('python'), args, { env: mlflowEnv(), cwd, timeout: 120_000 });
    const lines = stdout.trim().split('\n');
    return JSON.parse(lines[lines.length - 1] ?? '') as LoggedModel;
  } catch (err) {
    const stderr = (err as { stderr?: string }).stderr ?? '';
    throw new Error(`examples/${example}/log_model.py ${name} ${label} failed: ${err instanceof Error ? err.message : String(err)}\n${stderr.slice(-3000)}`);
  }
}

/**
 * Loads `modelUri` in a Python process (test/fixtures/mlflow_chat_predict.py) and runs predict, or
 * predict_stream when `stream` is set; resolves with the answer (the chunk list when streaming).
 */
export async function predictChatInProcess(uri: string, modelUri: string, request: unknown, options: { stream?: boolean } = {}): Promise<unknown> {
  return runPythonJson('mlflow_chat_predict.py', uri, { model_uri: modelUri, request, stream: options.stream === true });
}

/** Runs test/fixtures/SCRIPT with MLFLOW_TRACKING_URI=uri and `input` as JSON on stdin; resolves with its last stdout line, parsed. */
async function runPythonJson(script: string, uri: string, input: unknown): Promise<unknown> {
  const path = join(repoRoot, 'test', 'fixtures', script);
  const cwd = mkdtempSync(join(tmpdir(), 'flowgate-python-'));
  const child = spawn(venvBin('python'), [path], { env: mlflowEnv({ MLFLOW_TRACKING_URI: uri }), cwd, stdio: ['pipe', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (c: Buffer) => (stdout += c.toString('utf8')));
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString('utf8')));
  child.stdin.end(JSON.stringify(input));
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  if (code !== 0) throw new Error(`${script} ${JSON.stringify(input).slice(0, 200)} exited with ${code}\n${stderr.slice(-3000)}`);
  return JSON.parse(stdout.trim().split('\n').pop() ?? '') as unknown;
}

/** Serves models:/name/version with `mlflow models serve` (local env, nothing installed); resolves when /ping answers. */
export async function serveModel(uri: string, name: string, version: string): Promise<ServedModel> {
  const port = await freePort();
  const cwd = mkdtempSync(join(tmpdir(), 'flowgate-serve-'));
  const proc = startGroup(
    `mlflow-serve-${name}-v${version}`,
    ['models', 'serve', '-m', `models:/${name}/${version}`, '--env-manager', 'local', '--host', '127.0.0.1', '-p', String(port), '--workers', '1'],
    mlflowEnv({ MLFLOW_TRACKING_URI: uri }),
    cwd,
  );
  const url = `http://127.0.0.1:${port}`;
  await untilAnswering(`mlflow models serve ${name}/${version} on ${url}`, proc, `${url}/ping`, 120_000).catch(async (err: unknown) => {
    await stopGroup(proc);
    throw err;
  });
  return { port, url, process: proc, stop: () => stopGroup(proc) };
}

/** A chat prompt's messages, as mlflow.genai.register_prompt takes them. */
export type PromptTemplate = string | readonly { readonly role: string; readonly content: string }[];

/** Runs test/fixtures/mlflow_prompt.py (MLflow's own Python API) with one request; resolves with the version it touched. */
async function promptScript(uri: string, request: Record<string, unknown>): Promise<{ name: string; version: string }> {
  return (await runPythonJson('mlflow_prompt.py', uri, request)) as { name: string; version: string };
}

/** Registers a new version of prompt `name` with mlflow.genai.register_prompt (and points `alias` at it); resolves with its version. */
export async function registerPrompt(uri: string, name: string, template: PromptTemplate, alias?: string): Promise<string> {
  return (await promptScript(uri, { op: 'register', name, template, ...(alias !== undefined && { alias }) })).version;
}

/** Points a prompt's alias at `version` with mlflow.genai.set_prompt_alias. */
export async function setPromptAlias(uri: string, name: string, alias: string, version: string): Promise<void> {
  await promptScript(uri, { op: 'alias', name, alias, version });
}
