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
