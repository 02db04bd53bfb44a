import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startEnvoy, type EnvoyProcess } from '../harness/envoy.js';
import { startFlowgate, type FlowgateProcess } from '../harness/flowgate.js';
import { freePorts } from '../harness/ports.js';
import { waitFor } from '../harness/process.js';

/**
 * One gateway for a security test file: `flowgate serve` with its embedded filter service, a registry file
 * and the policy the test writes, and one real Envoy fed by it. Plus a raw HTTP/1.1 client that shows the
 * bytes on the wire (fetch decompresses and reframes, which would hide exactly what these tests look at).
 */

export interface GatewayStack {
  /** http://127.0.0.1:<public listener> */
  readonly base: string;
  readonly listenerPort: number;
  readonly flowgate: FlowgateProcess;
  readonly envoy: EnvoyProcess;
  stop(): Promise<void>;
}

export interface StackOptions {
  readonly name: string;
  /** Policy files besides gateway.yaml (which the stack writes), by file name. */
  readonly files: Readonly<Record<string, string>>;
  /** Registered models (each gets version 1). */
  readonly models: readonly string[];
  /** A path that answers 200 once the gateway serves the policy (probed with POST). */
  readonly readyPath: string;
  readonly readyHeaders?: Readonly<Record<string, string>>;
  /** The body of the readiness probe; default `{}`. */
  readonly readyBody?: string;
  readonly redisUrl?: string;
  readonly extraArgs?: readonly string[];
}

/** Starts flowgate (embedded filters) and Envoy, and waits until `readyPath` answers 200. */
export async function startStack(options: StackOptions): Promise<GatewayStack> {
  const [listener, filters, xds] = (await freePorts(3)) as [number, number, number];
  const dir = mkdtempSync(join(tmpdir(), `flowgate-${options.name}-`));
  const policyDir = join(dir, 'policy');
  mkdirSync(policyDir);
  writeFileSync(
    join(policyDir, 'gateway.yaml'),
    `kind: Gateway\nlisteners: [{ name: public, address: 127.0.0.1, port: ${listener} }]\nfilterService: { address: 127.0.0.1, port: ${filters}, timeout: 2s, failOpen: false }\n`,
  );
  for (const [file, text] of Object.entries(options.files)) writeFileSync(join(policyDir, file), text);
  writeFileSync(join(dir, 'registry.json'), JSON.stringify({ models: options.models.map((name) => ({ name, versions: [{ version: '1' }] })) }));
  const flowgate = await startFlowgate({
    policyDir,
    registryFile: join(dir, 'registry.json'),
    filtersPort: filters,
    xdsPort: xds,
    name: `flowgate-${options.name}`,
    ...(options.redisUrl !== undefined && { redisUrl: options.redisUrl }),
    ...(options.extraArgs !== undefined && { extraArgs: options.extraArgs }),
  });
  let envoy: EnvoyProcess;
  try {
    envoy = await startEnvoy({ nodeId: `security-${options.name}`, nodeCluster: 'security', xdsHost: '127.0.0.1', xdsPort: xds });
  } catch (err) {
    await flowgate.stop();
    throw err;
  }
  const base = `http://127.0.0.1:${listener}`;
  const stop = async (): Promise<void> => {
    await envoy.stop();
    await flowgate.stop();
  };
  try {
    await waitFor(
      `the gateway to serve ${options.readyPath}`,
      async () => ((await rawRequest(`${base}${options.readyPath}`, { method: 'POST', headers: { 'content-type': 'application/json', ...options.readyHeaders }, body: options.readyBody ?? '{}' })).status === 200 ? true : undefined),
      { timeoutMs: 60_000, describe: () => `${flowgate.process.tail(30)}\n--- envoy ---\n${envoy.process.tail(30)}` },
    );
  } catch (err) {
    await stop();
    throw err;
  }
  return { base, listenerPort: listener, flowgate, envoy, stop };
}

export interface RawAnswer {
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
  /** The body exactly as it came off the wire (still compressed if it was). */
  readonly body: Buffer;
}

export interface RawRequest {
  readonly method?: string;
  readonly headers?: Readonly<Record<string, string>>;
  readonly body?: string | Buffer;
  readonly timeoutMs?: number;
}

/** One HTTP/1.1 request with node:http: no automatic decompression, no header added but content-length. Network errors reject. */
export function rawRequest(url: string, init: RawRequest = {}): Promise<RawAnswer> {
  return new Promise((resolve, reject) => {
    const body = init.body === undefined ? undefined : Buffer.isBuffer(init.body) ? init.body : Buffer.from(init.body);
    const req = httpRequest(url, { method: init.method ?? 'GET', headers: { ...init.headers, ...(body && { 'content-length': String(body.length) }) }, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', reject);
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
    });
    req.setTimeout(init.timeoutMs ?? 10_000, () => req.destroy(new Error(`no answer from ${url} within ${init.timeoutMs ?? 10_000}ms`)));
    req.on('error', reject);
    req.end(body);
  });
}

/** The JSON of an answer's body, or a failure naming what came instead. */
export function jsonOf(answer: RawAnswer): Record<string, unknown> {
  try {
    return JSON.parse(answer.body.toString('utf8')) as Record<string, unknown>;
  } catch {
    throw new Error(`expected a JSON body, got ${answer.status} ${JSON.stringify(answer.headers)} ${answer.body.subarray(0, 200).toString('hex')}`);
  }
}

/** A Prometheus sample's value (0 when absent), from flowgate's /metrics. */
export async function sample(flowgate: FlowgateProcess, name: string, labels: Readonly<Record<string, string>> = {}): Promise<number> {
  const text = await flowgate.metrics();
  let total = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    const match = /^([^{ ]+)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!match || match[1] !== name) continue;
    const have: Record<string, string | undefined> = {};
    for (const m of (match[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) have[m[1] as string] = m[2];
    if (Object.entries(labels).every(([k, v]) => have[k] === v)) total += Number(match[3]);
  }
  return total;
}
