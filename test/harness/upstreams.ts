import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * Tiny HTTP upstreams for tests: each answers every request with JSON naming itself and echoing what it
 * received, and records the requests so a test can see what Envoy forwarded.
 */

export interface ReceivedRequest {
  readonly method: string;
  readonly path: string;
  readonly headers: IncomingHttpHeaders;
  readonly body: string;
}

export interface EchoUpstream {
  readonly name: string;
  readonly port: number;
  readonly received: ReceivedRequest[];
  close(): Promise<void>;
}

export interface EchoReply {
  upstream: string;
  method: string;
  path: string;
  headers: IncomingHttpHeaders;
  body: string;
}

/** Starts an echo upstream on a free loopback port; `respond` may replace the default JSON answer. */
export async function startEchoUpstream(
  name: string,
  respond?: (req: ReceivedRequest) => { status?: number; headers?: Record<string, string>; body: string },
): Promise<EchoUpstream> {
  const received: ReceivedRequest[] = [];
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const record = { method: req.method ?? '', path: req.url ?? '', headers: req.headers, body: Buffer.concat(chunks).toString('utf8') };
      received.push(record);
      if (respond) {
        const r = respond(record);
        res.writeHead(r.status ?? 200, { 'content-type': 'application/json', ...(r.headers ?? {}) });
        res.end(r.body);
        return;
      }
      const reply: EchoReply = { upstream: name, ...record };
      res.writeHead(200, { 'content-type': 'application/json', 'x-upstream': name });
      res.end(JSON.stringify(reply));
    });
  });
  server.keepAliveTimeout = 60_000;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    name,
    port,
    received,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

export interface StallingUpstream {
  readonly port: number;
  /** Answers whose first part is sent and whose end is held back. */
  readonly stalled: number;
  /** Sends the rest of every held answer and ends them. */
  release(): void;
  close(): Promise<void>;
}

/**
 * An upstream whose JSON answers stop part-way: it sends `firstBytes` of a JSON document (an open string)
 * and holds the rest until release(), so a test can keep exchanges open with a known body size in flight.
 */
export async function startStallingUpstream(firstBytes: number): Promise<StallingUpstream> {
  const held: (() => void)[] = [];
  const server: Server = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'application/json' });
      const head = '{"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2},"pad":"';
      res.write(head + 'x'.repeat(Math.max(0, firstBytes - head.length)));
      held.push(() => res.end('"}'));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    get stalled() {
      return held.length;
    },
    release: () => {
      for (const end of held.splice(0)) end();
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
