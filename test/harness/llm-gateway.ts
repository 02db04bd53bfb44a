import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startEnvoy, type EnvoyProcess } from './envoy.js';
import { startFlowgate, type FlowgateProcess } from './flowgate.js';
import { freePorts } from './ports.js';
import { waitFor } from './process.js';
import { request } from './traffic.js';

/**
 * One LLM gateway for an e2e file: a policy directory (the Gateway document serving the OpenAI API on one
 * listener, plus the file's own documents), `flowgate serve` with the embedded filter service, and a real
 * Envoy on it, ready once a chat completion for `readyModel` answers 200.
 */

export interface LlmGateway {
  readonly flowgate: FlowgateProcess;
  readonly envoy: EnvoyProcess;
  /** http://127.0.0.1:PORT of the listener; the OpenAI API is below `${base}/v1`. */
  readonly base: string;
  /** The temporary directory holding policy/ (and whatever the file writes beside it). */
  readonly dir: string;
  readonly policyDir: string;
  stop(): Promise<void>;
}

export interface LlmGatewayOptions {
  /** Names the processes, the Envoy node and the temporary directory. */
  readonly name: string;
  /** The policy files besides gateway.yaml, given the ports (a document may name the filter service's). */
  readonly files: (ports: { listener: number; filters: number }) => Record<string, string>;
  /** More lines of the Gateway document (YAML, at its top level). */
  readonly gatewayExtra?: string;
  /** The filter service's timeout in the Gateway document; absent: 2s. */
  readonly filterTimeout?: string;
  /** A registry file's JSON, written to DIR/registry.json; or an MLflow tracking URI. */
  readonly registry: { readonly json: string } | { readonly file: string } | { readonly mlflowUri: string };
  readonly pollIntervalMs?: number;
  readonly redisUrl?: string;
  readonly env?: Record<string, string>;
  readonly extraArgs?: readonly string[];
  /** The model a readiness probe asks. */
  readonly readyModel: string;
  /** More fields of the probe's body (e.g. prompt_variables) and its headers (e.g. a credential). */
  readonly readyBody?: Record<string, unknown>;
  readonly readyHeaders?: Record<string, string>;
  readonly readyTimeoutMs?: number;
  /** An existing temporary directory to use (several gateways of one file side by side). */
  readonly dir?: string;
}

/** The Gateway document serving the OpenAI API on `listener`, with the filter service on `filters`. */
export function llmGatewayDocument(listener: number, filters: number, options: { filterTimeout?: string; extra?: string } = {}): string {
  return `kind: Gateway
listeners: [{ name: llm, address: 127.0.0.1, port: ${listener} }]
filterService: { address: 127.0.0.1, port: ${filters}, timeout: ${options.filterTimeout ?? '2s'} }
openai: { listener: llm }
${options.extra ?? ''}`;
}

/** Starts the gateway and waits until the OpenAI API answers for `readyModel`. */
export async function startLlmGateway(options: LlmGatewayOptions): Promise<LlmGateway> {
  const [listener, filters] = (await freePorts(2)) as [number, number];
  const dir = options.dir ?? mkdtempSync(join(tmpdir(), `${options.name}-`));
  const policyDir = join(dir, `policy-${listener}`);
  mkdirSync(policyDir, { recursive: true });
  const files = { 'gateway.yaml': llmGatewayDocument(listener, filters, { filterTimeout: options.filterTimeout, extra: options.gatewayExtra }), ...options.files({ listener, filters }) };
  for (const [file, text] of Object.entries(files)) writeFileSync(join(policyDir, file), text);
  const registry = options.registry;
  let source: { registryFile: string } | { mlflowUri: string };
  if ('json' in registry) {
    writeFileSync(join(dir, 'registry.json'), registry.json);
    source = { registryFile: join(dir, 'registry.json') };
  } else source = 'file' in registry ? { registryFile: registry.file } : { mlflowUri: registry.mlflowUri };
  const flowgate = await startFlowgate({
    policyDir,
    ...source,
    pollIntervalMs: options.pollIntervalMs,
    filtersPort: filters,
    redisUrl: options.redisUrl,
    env: options.env,
    extraArgs: options.extraArgs,
    name: options.name,
  });
  let envoy: EnvoyProcess | undefined;
  try {
    envoy = await startEnvoy({ nodeId: options.name, nodeCluster: 'e2e', xdsHost: '127.0.0.1', xdsPort: flowgate.xdsPort });
    const base = `http://127.0.0.1:${listener}`;
    const started = envoy;
    const probe = JSON.stringify({ model: options.readyModel, messages: [{ role: 'user', content: 'ready?' }], ...options.readyBody });
    await waitFor(
      `${options.name}: the OpenAI API`,
      async () => ((await request(`${base}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json', ...options.readyHeaders }, body: probe })).status === 200 ? true : undefined),
      { timeoutMs: options.readyTimeoutMs, describe: () => `${flowgate.process.tail(30)}\n${started.process.tail(30)}` },
    );
    return {
      flowgate,
      envoy: started,
      base,
      dir,
      policyDir,
      stop: async () => {
        await started.stop();
        await flowgate.stop();
      },
    };
  } catch (err) {
    await envoy?.stop();
    await flowgate.stop();
    throw err;
  }
}

/** A Model document for an LLM model served by an upstream on `port` (version 1), with `guardrails` (YAML under `llm.guardrails:`). */
export function guardedModel(name: string, port: number, guardrails: string): string {
  return `kind: Model
name: ${name}
upstream: { addressTemplate: "127.0.0.1:${port}" }
traffic: { stable: { version: 1 } }
llm:
  guardrails:
${guardrails}`;
}
