import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { logger } from './log.js';
import { metricsRegistry } from './metrics.js';

/**
 * The admin HTTP endpoint: /healthz, /readyz, /metrics and JSON status pages added by each component.
 * Binds to loopback unless told otherwise, since it shows the fleet's configuration.
 */

const log = logger('admin');

export type AdminHandler = (url: URL, req: IncomingMessage) => Promise<AdminReply> | AdminReply;
export interface AdminReply {
  readonly status?: number;
  readonly json?: unknown;
  readonly text?: string;
  readonly contentType?: string;
  /** Extra response headers (the console's content security policy). */
  readonly headers?: Readonly<Record<string, string>>;
}

export type AdminMethod = 'GET' | 'POST';

export interface RouteOptions {
  /** Default GET. */
  readonly method?: AdminMethod;
  /** Serve every path below `path/` too (the handler reads the rest from the URL). */
  readonly prefix?: boolean;
}

/** A readiness condition: `ready` false carries the reason shown by /readyz. */
export type ReadinessCheck = () => { ready: boolean; reason?: string };

export class AdminServer {
  private readonly routes = new Map<string, AdminHandler>();
  private readonly prefixes: { method: AdminMethod; path: string; handler: AdminHandler }[] = [];
  private readonly checks = new Map<string, ReadinessCheck>();
  private server: Server | undefined;

  constructor() {
    this.routes.set('/healthz', () => ({ text: 'ok\n' }));
    this.routes.set('/readyz', () => this.readiness());
    this.routes.set('/metrics', async () => ({ text: await metricsRegistry.metrics(), contentType: metricsRegistry.contentType }));
  }

  /** Serves `path` (GET unless told otherwise; with `prefix`, every path below it too) with `handler`. */
  route(path: string, handler: AdminHandler, options: RouteOptions = {}): void {
    const method = options.method ?? 'GET';
    if (options.prefix) {
      this.prefixes.push({ method, path: path.replace(/\/+$/, ''), handler });
      this.prefixes.sort((a, b) => b.path.length - a.path.length);
    } else {
      this.routes.set(method === 'GET' ? path : `${method} ${path}`, handler);
    }
  }

  private find(method: string, path: string): { handler?: AdminHandler; otherMethod: boolean } {
    const exact = this.routes.get(method === 'GET' ? path : `${method} ${path}`);
    if (exact) return { handler: exact, otherMethod: false };
    const under = (p: { path: string }): boolean => path === p.path || path.startsWith(`${p.path}/`);
    const prefixed = this.prefixes.find((p) => p.method === method && under(p));
    if (prefixed) return { handler: prefixed.handler, otherMethod: false };
    const known = this.routes.has(path) || [...this.routes.keys()].some((k) => k.endsWith(` ${path}`)) || this.prefixes.some(under);
    return { otherMethod: known };
  }

  /** Adds a condition that must hold for /readyz to answer 200. */
  readinessCheck(name: string, check: ReadinessCheck): void {
    this.checks.set(name, check);
  }

  /** Starts listening; resolves with the bound port (useful with port 0). */
  async listen(port: number, host = '127.0.0.1'): Promise<number> {
    const server = createServer((req, res) => void this.handle(req, res));
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => resolve());
    });
    const bound = (server.address() as AddressInfo).port;
    log.info({ host, port: bound }, 'admin listening');
    return bound;
  }

  /** Stops listening and closes idle connections. */
  async close(): Promise<void> {
    const server = this.server;
    if (!server) return;
    await new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
  }

  private readiness(): AdminReply {
    const failing: Record<string, string> = {};
    for (const [name, check] of this.checks) {
      const r = check();
      if (!r.ready) failing[name] = r.reason ?? 'not ready';
    }
    const ready = Object.keys(failing).length === 0;
    return { status: ready ? 200 : 503, json: { ready, failing } };
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://admin');
    const { handler, otherMethod } = this.find(req.method ?? 'GET', url.pathname);
    if (!handler) {
      res.writeHead(otherMethod ? 405 : 404, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: otherMethod ? 'method not allowed' : 'not found', paths: [...this.routes.keys()].filter((k) => !k.includes(' ')) }));
      return;
    }
    try {
      const reply = await handler(url, req);
      if (reply.json !== undefined) {
        res.writeHead(reply.status ?? 200, { 'content-type': 'application/json', 'cache-control': 'no-store', ...reply.headers });
        res.end(JSON.stringify(reply.json, null, 2) + '\n');
      } else {
        res.writeHead(reply.status ?? 200, { 'content-type': reply.contentType ?? 'text/plain; charset=utf-8', ...reply.headers });
        res.end(reply.text ?? '');
      }
    } catch (err) {
      log.error({ err, path: url.pathname }, 'admin handler failed');
      res.writeHead(500, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: 'internal error' }));
    }
  }
}
