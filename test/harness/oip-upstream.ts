import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * A stand-in for an Open Inference Protocol v2 model server (what KServe, Triton or MLServer speak over
 * REST): /v2/health/{live,ready}, /v2/models/{name}[/ready], and /v2/models/{name}/infer scoring the demo
 * model's function (score = amount / (amount + 100), rounded to 6 places) with the label it was started
 * with. It checks requests as the protocol says (inputs of name, shape, datatype, data; element counts
 * matching the shape) and answers errors as {"error": ...}, so a converted request that is wrong fails
 * here the way it would on a real server. Every request is recorded.
 */

export interface OipRequest {
  readonly method: string;
  readonly path: string;
  readonly body: string;
}

export interface OipUpstream {
  readonly port: number;
  readonly received: OipRequest[];
  close(): Promise<void>;
}

interface Tensor {
  name: string;
  shape: number[];
  datatype: string;
  data: unknown[];
}

const flatten = (v: unknown): unknown[] => (Array.isArray(v) ? v.flatMap(flatten) : [v]);
const score = (amount: number): number => Math.round((Math.max(amount, 0) / (Math.max(amount, 0) + 100)) * 1e6) / 1e6;

function readInputs(body: unknown): Tensor[] | string {
  const inputs = (body as { inputs?: unknown } | null)?.inputs;
  if (!Array.isArray(inputs) || inputs.length === 0) return 'inputs must be a non-empty list of tensors';
  const out: Tensor[] = [];
  for (const t of inputs as Record<string, unknown>[]) {
    if (typeof t.name !== 'string' || !Array.isArray(t.shape) || typeof t.datatype !== 'string' || t.data === undefined) return 'each input needs name, shape, datatype and data';
    const data = flatten(t.data);
    const count = (t.shape as number[]).reduce((a, b) => a * b, 1);
    if (data.length !== count) return `input '${t.name}' has ${data.length} elements for shape [${(t.shape as number[]).join(', ')}]`;
    out.push({ name: t.name, shape: t.shape as number[], datatype: t.datatype, data });
  }
  return out;
}

/** Starts the stand-in for model `name` answering with `label`, on a free loopback port. */
export async function startOipUpstream(name: string, label: string): Promise<OipUpstream> {
  const received: OipRequest[] = [];
  const base = `/v2/models/${encodeURIComponent(name)}`;
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const path = (req.url ?? '').split('?')[0] ?? '';
      const body = Buffer.concat(chunks).toString('utf8');
      received.push({ method: req.method ?? '', path, body });
      const answer = (status: number, json: unknown): void => {
        res.writeHead(status, { 'content-type': 'application/json' });
        res.end(JSON.stringify(json));
      };
      if (path === '/v2/health/ready' || path === '/v2/health/live' || path === `${base}/ready`) return answer(200, { ready: true });
      if (path === base && req.method === 'GET') {
        return answer(200, { name, versions: ['1'], platform: 'node-standin', inputs: [{ name: 'amount', datatype: 'FP64', shape: [-1] }], outputs: [] });
      }
      if (path !== `${base}/infer` || req.method !== 'POST') return answer(404, { error: `no route ${req.method ?? ''} ${path}` });
      let doc: unknown;
      try {
        doc = JSON.parse(body);
      } catch {
        return answer(400, { error: 'the body is not JSON' });
      }
      const inputs = readInputs(doc);
      if (typeof inputs === 'string') return answer(400, { error: inputs });
      const amount = inputs.find((t) => t.name === 'amount');
      if (!amount) return answer(400, { error: "no input named 'amount'" });
      if (!amount.data.every((v) => typeof v === 'number')) return answer(400, { error: "input 'amount' must be numbers" });
      const rows = amount.data.length;
      const id = (doc as { id?: unknown }).id;
      answer(200, {
        model_name: name,
        model_version: '1',
        ...(typeof id === 'string' && { id }),
        outputs: [
          { name: 'version_label', shape: [rows], datatype: 'BYTES', data: Array.from({ length: rows }, () => label) },
          { name: 'score', shape: [rows], datatype: 'FP64', data: amount.data.map((a) => score(a)) },
        ],
      });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    received,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
