import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { RegistryModel } from './fixtures.js';

/**
 * A stand-in for an MLflow tracking server that answers only the three read endpoints Flowgate's poller
 * calls (registered-models/search, model-versions/search, registered-models/get), in the REST API 2.0
 * JSON shapes, paginated. It exists so the registry-change row measures Flowgate and not a Python server
 * sharing the same two cores; the state it serves is switched in one step, which is the trigger.
 */
export class MlflowStub {
  private models: readonly RegistryModel[];
  private server: Server | undefined;
  private switchedAt: number | undefined;
  private firstPollAfterSwitch: number | undefined;
  /** Requests answered, for the report (a 1 s poll of 1,000 models is several pages a second). */
  requests = 0;

  constructor(initial: readonly RegistryModel[]) {
    this.models = initial;
  }

  /** Listens on 127.0.0.1 and resolves with the tracking URI. */
  async start(): Promise<string> {
    const server = createServer((req, res) => {
      this.requests++;
      const url = new URL(req.url ?? '/', 'http://stub');
      const path = url.pathname.replace(/^\/api\/2\.0\/mlflow\//, '');
      if (path === 'registered-models/search' && this.switchedAt !== undefined && this.firstPollAfterSwitch === undefined) {
        this.firstPollAfterSwitch = wallClockMs();
      }
      const answer = this.answer(path, url.searchParams);
      res.writeHead(answer.status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(answer.body));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    this.server = server;
    return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  }

  /** Serves `models` from now on; returns the wall-clock time (ms, fractional) of the switch. */
  switchTo(models: readonly RegistryModel[]): number {
    this.models = models;
    this.firstPollAfterSwitch = undefined;
    this.switchedAt = wallClockMs();
    return this.switchedAt;
  }

  /** When the first poll after the last switch started (wall clock, ms), if one has. */
  pollAfterSwitch(): number | undefined {
    return this.firstPollAfterSwitch;
  }

  async stop(): Promise<void> {
    const server = this.server;
    if (!server) return;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  private answer(path: string, query: URLSearchParams): { status: number; body: unknown } {
    const pageSize = Math.max(1, Math.min(Number(query.get('max_results') ?? 100) || 100, 1000));
    const offset = Number(query.get('page_token') ?? 0) || 0;
    switch (path) {
      case 'registered-models/search':
        return { status: 200, body: page('registered_models', this.models.filter(namedBy(query.get('filter'))).map(wireModel), offset, pageSize) };
      case 'model-versions/search': {
        const versions = this.models.filter(namedBy(query.get('filter'))).flatMap(wireVersions);
        return { status: 200, body: page('model_versions', versions, offset, pageSize) };
      }
      case 'registered-models/get': {
        const model = this.models.find((m) => m.name === query.get('name'));
        if (!model) return { status: 404, body: { error_code: 'RESOURCE_DOES_NOT_EXIST', message: `Registered Model with name=${query.get('name')} not found` } };
        return { status: 200, body: { registered_model: wireModel(model) } };
      }
      default:
        return { status: 404, body: { error_code: 'ENDPOINT_NOT_FOUND', message: `the stub does not serve ${path}` } };
    }
  }
}

/** Wall-clock milliseconds with sub-millisecond precision, comparable with the Go client's time.Now(). */
export function wallClockMs(): number {
  return performance.timeOrigin + performance.now();
}

function page<T>(field: string, items: readonly T[], offset: number, size: number): Record<string, unknown> {
  const slice = items.slice(offset, offset + size);
  const next = offset + size < items.length ? { next_page_token: String(offset + size) } : {};
  return { [field]: slice, ...next };
}

function wireModel(m: RegistryModel): object {
  return { name: m.name, aliases: Object.entries(m.aliases).map(([alias, version]) => ({ alias, version })) };
}

function wireVersions(m: RegistryModel): object[] {
  return m.versions.map((v) => ({
    name: m.name,
    version: v.version,
    current_stage: 'None',
    status: v.status,
    creation_timestamp: 1_700_000_000_000,
    last_updated_timestamp: 1_700_000_000_000,
    tags: Object.entries(v.tags).map(([key, value]) => ({ key, value })),
    aliases: Object.entries(m.aliases)
      .filter(([, version]) => version === v.version)
      .map(([alias]) => alias),
  }));
}

/**
 * The models a search filter names: `name='x'` or `name IN ('x', 'y')` (what Flowgate's poller sends for the
 * models its policy names), every model without a filter. A prompt filter (`tags.` ...) names no model here.
 */
function namedBy(filter: string | null): (m: RegistryModel) => boolean {
  if (!filter) return () => true;
  if (filter.includes('tags.')) return () => false;
  const one = /^name\s*=\s*'(.*)'$/.exec(filter)?.[1];
  if (one !== undefined) return (m) => m.name === one;
  const list = /^name IN \((.*)\)$/.exec(filter)?.[1];
  if (list !== undefined) {
    const names = new Set([...list.matchAll(/'([^']*)'/g)].map((x) => x[1]));
    return (m) => names.has(m.name);
  }
  return () => true;
}
