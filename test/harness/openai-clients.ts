import { spawn } from 'node:child_process';
import { join } from 'node:path';
import OpenAI from 'openai';
import { repoRoot, venvBin } from './venv.js';

/**
 * The official OpenAI SDKs as test clients: the Python one (PyPI `openai`, in .venv) through
 * test/fixtures/openai_client.py, the Node one (npm `openai`) in-process. Both take the same command and
 * give the same result shapes, so one test table can run against both:
 *
 *   for (const [sdk, run] of Object.entries(openaiSdks)) {
 *     const outcome = await run({ baseUrl, apiKey, operation: 'chat', args: { model, messages } });
 *   }
 *
 * Clients never retry unless the command says so (the SDKs' default is 2 retries, which would hide the
 * 429s and 5xxs a test is looking for).
 */

export type OpenaiOperation = 'chat' | 'stream' | 'completions' | 'embeddings' | 'models';

export interface OpenaiCommand {
  /** What the SDK takes as base URL, e.g. http://127.0.0.1:8080/v1. */
  baseUrl: string;
  apiKey?: string;
  operation: OpenaiOperation;
  /** Arguments of the SDK call (chat.completions.create and so on), in the API's field names. */
  args?: Record<string, unknown>;
  /** Default 0. */
  maxRetries?: number;
  /** Default 30 s. */
  timeoutMs?: number;
  /** Extra request headers. */
  headers?: Record<string, string>;
}

/** What the SDK raised: its exception class name, and for HTTP errors the status, the `error` object of the body and the headers. */
export interface SdkError {
  class: string;
  status: number | null;
  body: unknown;
  headers: Record<string, string>;
  message: string;
}

export type SdkOutcome = { ok: true; result: unknown } | { ok: false; error: SdkError };

/** The result of the `stream` operation: every chunk, the text of choice 0, and the last usage seen (null when none). */
export interface StreamResult {
  chunks: Record<string, unknown>[];
  text: string;
  usage: Record<string, unknown> | null;
}

/** A Node SDK client on `baseUrl` that does not retry unless told to. */
export function openaiClient(baseUrl: string, apiKey = 'unused', options: { maxRetries?: number; timeoutMs?: number; headers?: Record<string, string> } = {}): OpenAI {
  return new OpenAI({ baseURL: baseUrl, apiKey, maxRetries: options.maxRetries ?? 0, timeout: options.timeoutMs ?? 30_000, defaultHeaders: options.headers });
}

/** A JSON round trip: SDK objects as the plain data a Python result also is. */
const plain = <T>(value: T): T => JSON.parse(JSON.stringify(value)) as T;

type CreateArgs<T extends (...args: never[]) => unknown> = Parameters<T>[0];

async function runNodeOperation(client: OpenAI, operation: OpenaiOperation, args: Record<string, unknown>): Promise<unknown> {
  switch (operation) {
    case 'chat':
      return plain(await client.chat.completions.create(args as unknown as CreateArgs<typeof client.chat.completions.create> & { stream?: false }));
    case 'stream': {
      const stream = await client.chat.completions.create({ ...args, stream: true } as CreateArgs<typeof client.chat.completions.create> & { stream: true });
      const result: StreamResult = { chunks: [], text: '', usage: null };
      for await (const chunk of stream) {
        result.chunks.push(plain(chunk) as unknown as Record<string, unknown>);
        const first = chunk.choices[0];
        if (first?.index === 0 && first.delta.content) result.text += first.delta.content;
        if (chunk.usage) result.usage = plain(chunk.usage) as unknown as Record<string, unknown>;
      }
      return result;
    }
    case 'completions':
      return plain(await client.completions.create(args as unknown as CreateArgs<typeof client.completions.create> & { stream?: false }));
    case 'embeddings':
      return plain(await client.embeddings.create(args as unknown as CreateArgs<typeof client.embeddings.create>));
    case 'models': {
      const data: unknown[] = [];
      for await (const model of client.models.list()) data.push(plain(model));
      return { data };
    }
  }
}

/** Runs `command` with the Node SDK in-process; any exception becomes `{ ok: false, error }`. */
export async function runNodeOpenai(command: OpenaiCommand): Promise<SdkOutcome> {
  const client = openaiClient(command.baseUrl, command.apiKey, command);
  try {
    return { ok: true, result: await runNodeOperation(client, command.operation, command.args ?? {}) };
  } catch (err) {
    if (!(err instanceof OpenAI.APIError)) {
      // A stream cut short surfaces as fetch's own error, not the SDK's.
      const error = err instanceof Error ? err : new Error(String(err));
      return { ok: false, error: { class: error.constructor.name, status: null, body: null, headers: {}, message: error.message } };
    }
    const headers: Record<string, string> = {};
    (err.headers as Headers | undefined)?.forEach((value: string, key: string) => (headers[key] = value));
    return { ok: false, error: { class: err.constructor.name, status: typeof err.status === 'number' ? err.status : null, body: (err.error as unknown) ?? null, headers, message: err.message } };
  }
}

/** The command as openai_client.py reads it (snake_case, seconds). */
function pythonCommand(command: OpenaiCommand): Record<string, unknown> {
  return {
    base_url: command.baseUrl,
    api_key: command.apiKey ?? 'unused',
    operation: command.operation,
    args: command.args ?? {},
    max_retries: command.maxRetries ?? 0,
    timeout: (command.timeoutMs ?? 30_000) / 1000,
    headers: command.headers,
  };
}

/** Runs several commands with the Python SDK in one Python process (one interpreter start for all). */
export async function runPythonOpenaiBatch(commands: OpenaiCommand[]): Promise<SdkOutcome[]> {
  const script = join(repoRoot, 'test', 'fixtures', 'openai_client.py');
  const env: NodeJS.ProcessEnv = { ...process.env };
  // The SDK reads these when a command leaves them out; a developer's own must never reach a test upstream.
  for (const key of ['OPENAI_API_KEY', 'OPENAI_BASE_URL', 'OPENAI_ORG_ID', 'OPENAI_PROJECT_ID', 'OPENAI_ADMIN_KEY']) delete env[key];
  const child = spawn(venvBin('python'), [script], { env, stdio: ['pipe', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (c: Buffer) => (stdout += c.toString('utf8')));
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString('utf8')));
  child.stdin.end(JSON.stringify(commands.map(pythonCommand)));
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  if (code !== 0) throw new Error(`openai_client.py exited with ${code}\n${stderr.slice(-3000)}`);
  return JSON.parse(stdout) as SdkOutcome[];
}

/** Runs `command` with the Python SDK; any exception becomes `{ ok: false, error }`. */
export async function runPythonOpenai(command: OpenaiCommand): Promise<SdkOutcome> {
  const [outcome] = await runPythonOpenaiBatch([command]);
  if (outcome === undefined) throw new Error('openai_client.py printed no outcome');
  return outcome;
}

/** Both SDKs by name, for tests that run one table against each. */
export const openaiSdks: Readonly<Record<'python' | 'node', (command: OpenaiCommand) => Promise<SdkOutcome>>> = {
  python: runPythonOpenai,
  node: runNodeOpenai,
};

/** The result of a successful outcome; fails with the SDK's error when there is none. */
export function resultOf<T>(outcome: SdkOutcome): T {
  if (!outcome.ok) throw new Error(`the SDK raised ${outcome.error.class} (${outcome.error.status ?? 'no status'}): ${outcome.error.message}`);
  return outcome.result as T;
}
