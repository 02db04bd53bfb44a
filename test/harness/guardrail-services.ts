import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

/**
 * Stand-ins for the services an LLM guardrail can call, in one plain Node http server on a free loopback port:
 *
 *   POST /check     Flowgate's external guardrail contract: blocks texts containing "forbidden", masks
 *                   "secret-\d+" as "[REDACTED]", allows the rest
 *   POST /analyze   a stub of the Presidio Analyzer API ({text, language, entities?, score_threshold?} ->
 *                   [{entity_type, start, end, score}]): finds e-mail addresses (EMAIL_ADDRESS, 1.0) and the
 *                   name "John Smith" (PERSON, 0.85), offsets in code points as Presidio's are
 *
 * Either can be made to fail (500), hang past any timeout, or answer garbage; every request is recorded.
 */

export type StubMode = 'ok' | 'error' | 'hang' | 'garbage';

export interface GuardrailStub {
  readonly port: number;
  readonly url: string;
  readonly received: { readonly path: string; readonly json: Record<string, unknown> }[];
  mode: StubMode;
  close(): Promise<void>;
}

/** Code-point offsets of each match of `re` in `text` (Presidio reports Python string indices). */
function codePointSpans(text: string, re: RegExp): { start: number; end: number }[] {
  const out: { start: number; end: number }[] = [];
  for (const m of text.matchAll(re)) {
    const start = [...text.slice(0, m.index)].length;
    out.push({ start, end: start + [...m[0]].length });
  }
  return out;
}

function analyze(body: Record<string, unknown>): unknown[] {
  const text = typeof body.text === 'string' ? body.text : '';
  const wanted = Array.isArray(body.entities) ? (body.entities as string[]) : undefined;
  const threshold = typeof body.score_threshold === 'number' ? body.score_threshold : 0;
  const found = [
    ...codePointSpans(text, /[\w.+-]+@[\w-]+\.[\w.]+/g).map((s) => ({ entity_type: 'EMAIL_ADDRESS', ...s, score: 1.0 })),
    ...codePointSpans(text, /John Smith/g).map((s) => ({ entity_type: 'PERSON', ...s, score: 0.85 })),
  ];
  return found.filter((f) => (!wanted || wanted.includes(f.entity_type)) && f.score >= threshold);
}

function check(body: Record<string, unknown>): unknown {
  const texts = Array.isArray(body.texts) ? (body.texts as string[]) : [];
  if (texts.some((t) => t.includes('forbidden'))) return { action: 'block', reason: 'forbidden topic' };
  if (texts.some((t) => /secret-\d+/.test(t))) return { action: 'mask', masked: texts.map((t) => t.replace(/secret-\d+/g, '[REDACTED]')) };
  return { action: 'allow' };
}

export async function startGuardrailStub(): Promise<GuardrailStub> {
  const sockets = new Set<Socket>();
  const stub = { received: [] as GuardrailStub['received'][number][], mode: 'ok' as StubMode };
  const server: Server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      let json: Record<string, unknown> = {};
      try {
        json = JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown>;
      } catch {
        json = {};
      }
      stub.received.push({ path: req.url ?? '', json });
      if (stub.mode === 'hang') return;
      if (stub.mode === 'error') return void res.writeHead(500, { 'content-type': 'application/json' }).end('{"error": "down"}');
      if (stub.mode === 'garbage') return void res.writeHead(200, { 'content-type': 'application/json' }).end('{"verdict": 42}');
      const answer = req.url === '/analyze' ? analyze(json) : req.url === '/check' ? check(json) : undefined;
      if (answer === undefined) return void res.writeHead(404).end();
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(answer));
    });
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return Object.assign(stub, {
    port,
    url: `http://127.0.0.1:${port}`,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  });
}
