import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { metricsRegistry } from '../../src/observability/metrics.js';
import { MlflowClient, MlflowError, mlflowClientOptionsFromEnv, nameFilter } from '../../src/registry/mlflow-client.js';
import { RegistryPoller, type SyncErrorDetails } from '../../src/registry/poller.js';
import { normalizeModel } from '../../src/registry/snapshot.js';
import type { RegistrySnapshot } from '../../src/registry/types.js';
import { freePort } from '../harness/ports.js';
import { waitFor } from '../harness/process.js';
import { startMlflow, type MlflowServer } from '../harness/mlflow.js';

/**
 * MlflowClient and RegistryPoller against a real MLflow tracking server (one for the whole file; it takes
 * seconds to start). Models created here have distinct names per test, so tests do not see each other's.
 */

let mlflow: MlflowServer;

beforeAll(async () => {
  mlflow = await startMlflow({ name: 'mlflow-client-test' });
});

afterAll(async () => {
  await mlflow?.stop();
});

/** A model with `count` versions (source s3://…, which MLflow accepts without a run). */
async function createModel(name: string, count: number, tags: Record<string, string> = {}): Promise<void> {
  await mlflow.admin.createRegisteredModel(name, { tags });
  for (let i = 1; i <= count; i++) {
    await mlflow.admin.createModelVersion({ name, source: `s3://models/${name}/${i}`, tags: { 'flowgate.address': `127.0.0.1:${8000 + i}` } });
  }
}

async function metric(name: string, labels: Record<string, string> = {}): Promise<number> {
  const m = metricsRegistry.getSingleMetric(name);
  if (!m) throw new Error(`no metric ${name}`);
  const { values } = await m.get();
  const found = values.find((v) => Object.entries(labels).every(([k, want]) => v.labels[k] === want));
  return found?.value ?? 0;
}

describe('MlflowClient', () => {
  it('reads models, versions, aliases, stages and tags into a snapshot', async () => {
    await createModel('fraud-detector', 3, { team: 'risk' });
    await mlflow.admin.setAlias('fraud-detector', 'champion', '1');
    await mlflow.admin.setAlias('fraud-detector', 'challenger', '2');
    await mlflow.admin.setAlias('fraud-detector', 'stable', '1');
    await mlflow.admin.transitionStage('fraud-detector', '1', 'Production');
    await mlflow.admin.transitionStage('fraud-detector', '2', 'Staging');
    await mlflow.admin.setModelVersionTag('fraud-detector', '3', 'owner', 'ana');
    await createModel('churn', 1);

    const client = new MlflowClient({ trackingUri: mlflow.uri });
    const before = Date.now();
    const snapshot = await client.fetchSnapshot();
    expect(snapshot.fetchedAt).toBeGreaterThanOrEqual(before);
    expect(snapshot.hash).toMatch(/^[0-9a-f]{64}$/);
    expect(snapshot.models.has('churn')).toBe(true);
    const model = snapshot.models.get('fraud-detector');
    expect(model?.tags).toEqual({ team: 'risk' });
    expect(model?.aliases).toEqual({ challenger: '2', champion: '1', stable: '1' });
    expect(Object.keys(model?.aliases ?? {})).toEqual(['challenger', 'champion', 'stable']);
    expect(model?.versions.map((v) => [v.name, v.version, v.status, v.stage, v.aliases])).toEqual([
      ['fraud-detector', '1', 'READY', 'Production', ['champion', 'stable']],
      ['fraud-detector', '2', 'READY', 'Staging', ['challenger']],
      ['fraud-detector', '3', 'READY', 'None', []],
    ]);
    expect(model?.versions[2]?.tags).toEqual({ 'flowgate.address': '127.0.0.1:8003', owner: 'ana' });
    expect(model?.versions[0]?.source).toBe('s3://models/fraud-detector/1');
    expect(model?.versions[0]?.createdAt).toBeGreaterThan(before - 60_000);
    expect(model?.versions[0]?.updatedAt).toBeGreaterThanOrEqual(model?.versions[0]?.createdAt ?? Infinity);

    // Nothing changed: a second fetch has the same hash.
    expect((await client.fetchSnapshot()).hash).toBe(snapshot.hash);
    expect(await client.aliases('fraud-detector')).toEqual({ challenger: '2', champion: '1', stable: '1' });
    expect(await client.getRegisteredModel('no-such-model')).toBeUndefined();
    expect((await client.listRegisteredModels()).map((m) => m.name)).toEqual(expect.arrayContaining(['churn', 'fraud-detector']));
  });

  it('follows page tokens to the end, whatever the page size', async () => {
    for (let i = 0; i < 5; i++) await createModel(`paged-${i}`, 1);
    // 11 versions: more than five pages of two, and "10" and "11" must sort after "9".
    await createModel('many-versions', 11);
    const small = new MlflowClient({ trackingUri: mlflow.uri, pageSize: 2 });
    const large = new MlflowClient({ trackingUri: mlflow.uri });
    const [a, b] = [await small.fetchSnapshot(), await large.fetchSnapshot()];
    for (let i = 0; i < 5; i++) expect(a.models.has(`paged-${i}`)).toBe(true);
    expect(a.models.get('many-versions')?.versions.map((v) => v.version)).toEqual(['1', '2', '3', '4', '5', '6', '7', '8', '9', '10', '11']);
    expect(a.hash).toBe(b.hash);
    expect((await small.searchModelVersions('many-versions')).length).toBe(11);
    expect((await small.listRegisteredModels()).length).toBe(b.models.size);
  });

  it('fetches only the named models when given names, skipping ones MLflow does not have', async () => {
    await createModel("it's-quoted", 2);
    const client = new MlflowClient({ trackingUri: mlflow.uri, pageSize: 1 });
    const all = await client.fetchSnapshot();
    const some = await client.fetchSnapshot(['fraud-detector', 'not-registered', "it's-quoted", 'fraud-detector']);
    expect([...some.models.keys()]).toEqual(['fraud-detector', "it's-quoted"]);
    expect(some.models.get('fraud-detector')).toEqual(all.models.get('fraud-detector'));
    expect(some.models.get("it's-quoted")?.versions.map((v) => v.version)).toEqual(['1', '2']);
    expect((await client.fetchSnapshot([])).models.size).toBe(0);
    expect(nameFilter('plain')).toBe("name='plain'");
    expect(nameFilter("it's")).toBe(`name="it's"`);
  });

  it('fetches more named models than one batch holds, in batches, the same as one by one', async () => {
    const names = Array.from({ length: 55 }, (_, i) => `batch-${String(i).padStart(2, '0')}`);
    for (const [i, name] of names.entries()) await createModel(name, i % 10 === 0 ? 2 : 0);
    const client = new MlflowClient({ trackingUri: mlflow.uri, pageSize: 7 });
    const wanted = [...names, 'batch-missing-1', 'batch-missing-2'];
    const snapshot = await client.fetchSnapshot(wanted);
    expect([...snapshot.models.keys()]).toEqual(names);
    for (const name of ['batch-00', 'batch-10', 'batch-54']) {
      const one = await client.fetchModel(name);
      expect(one && snapshot.models.get(name)).toEqual(one && normalizeModel(one));
    }
    expect(snapshot.models.get('batch-50')?.versions.map((v) => v.version)).toEqual(['1', '2']);
    expect(await client.fetchModel('batch-missing-1')).toBeUndefined();
  });

  it('sees an alias move, and the hash follows it', async () => {
    await createModel('alias-moves', 3);
    await mlflow.admin.setAlias('alias-moves', 'champion', '1');
    const client = new MlflowClient({ trackingUri: mlflow.uri });
    const first = await client.fetchSnapshot(['alias-moves']);
    await mlflow.admin.setAlias('alias-moves', 'champion', '3');
    const moved = await client.fetchSnapshot(['alias-moves']);
    expect(moved.hash).not.toBe(first.hash);
    expect(moved.models.get('alias-moves')?.aliases).toEqual({ champion: '3' });
    expect(moved.models.get('alias-moves')?.versions.map((v) => v.aliases)).toEqual([[], [], ['champion']]);
    await mlflow.admin.deleteAlias('alias-moves', 'champion');
    const gone = await client.fetchSnapshot(['alias-moves']);
    expect(gone.models.get('alias-moves')?.aliases).toEqual({});
    expect(gone.models.get('alias-moves')?.versions.every((v) => v.aliases.length === 0)).toBe(true);
    // The admin's own view agrees with the registry's.
    expect((await mlflow.admin.getModelVersion('alias-moves', '3')).aliases).toEqual([]);
  });

  it('reports MLflow errors with status, error_code and a bounded reason', async () => {
    // MLflow caps registered-model search pages at 1000.
    const client = new MlflowClient({ trackingUri: mlflow.uri, pageSize: 5000 });
    const err = await client.fetchSnapshot().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(MlflowError);
    const e = err as MlflowError;
    expect([e.failure, e.status, e.mlflowCode, e.code]).toEqual(['http_4xx', 400, 'INVALID_PARAMETER_VALUE', 'registry.http_4xx']);
    expect(e.where).toBe(`GET ${mlflow.uri}/api/2.0/mlflow/registered-models/search`);

    const down = new MlflowClient({ trackingUri: `http://127.0.0.1:${await freePort()}` });
    const unreachable = await down.fetchSnapshot().catch((x: unknown) => x);
    expect(unreachable).toBeInstanceOf(MlflowError);
    expect((unreachable as MlflowError).failure).toBe('unreachable');
    expect((unreachable as MlflowError).message).toMatch(/ECONNREFUSED/);
  });
});

/** A stand-in server for what the client sends: records requests, answers as an empty registry would (or hangs). */
async function headerRecorder(): Promise<{ url: string; seen: { path: string; headers: IncomingHttpHeaders }[]; close(): Promise<void> }> {
  const seen: { path: string; headers: IncomingHttpHeaders }[] = [];
  const server: Server = createServer((req, res) => {
    seen.push({ path: req.url ?? '', headers: req.headers });
    if (req.url?.includes('hang')) return; // never answers
    if (req.url?.includes('/registered-models/get')) {
      res.writeHead(404, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error_code: 'RESOURCE_DOES_NOT_EXIST', message: 'Registered Model not found' }));
      return;
    }
    if (req.url?.includes('denied')) {
      res.writeHead(403, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error_code: 'PERMISSION_DENIED', message: 'Permission denied' }));
      return;
    }
    if (req.url?.includes('shape')) {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ registered_models: [{ nome: 'typo' }] }));
      return;
    }
    if (req.url?.includes('garbage')) {
      res.writeHead(200, { 'content-type': 'text/html' });
      res.end('<html>login</html>');
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end('{}');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    seen,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

describe('MlflowClient credentials and failures', () => {
  it('sends a bearer token, basic credentials, or credentials found in the URI', async () => {
    const rec = await headerRecorder();
    try {
      const empty = await new MlflowClient({ trackingUri: rec.url, token: 's3cr3t-token' }).fetchSnapshot();
      expect(empty.models.size).toBe(0);
      // Models, then prompts (MLflow's searches return prompts only when the filter names the prompt tag).
      expect(rec.seen.map((s) => s.path.split('?')[0])).toEqual([
        '/api/2.0/mlflow/registered-models/search',
        '/api/2.0/mlflow/registered-models/search',
        '/api/2.0/mlflow/model-versions/search',
        '/api/2.0/mlflow/model-versions/search',
      ]);
      expect(new URL(rec.seen[1]?.path ?? '/', 'http://mlflow').searchParams.get('filter')).toBe("tags.`mlflow.prompt.is_prompt` = 'true'");
      expect(rec.seen.every((s) => s.headers.authorization === 'Bearer s3cr3t-token')).toBe(true);

      rec.seen.length = 0;
      await new MlflowClient({ trackingUri: `${rec.url}/`, username: 'ana', password: 'pa:ss' }).fetchSnapshot();
      expect(rec.seen[0]?.headers.authorization).toBe(`Basic ${Buffer.from('ana:pa:ss').toString('base64')}`);

      rec.seen.length = 0;
      const inUri = new MlflowClient({ trackingUri: rec.url.replace('http://', 'http://bob:hunter2@') });
      expect(inUri.trackingUri).toBe(rec.url);
      expect((await inUri.fetchSnapshot(['m'])).models.size).toBe(0);
      // Named models are searched in batches (name IN ...), not read one call each.
      const first = new URL(rec.seen[0]?.path ?? '/', 'http://mlflow');
      expect(first.pathname).toBe('/api/2.0/mlflow/registered-models/search');
      expect(first.searchParams.get('filter')).toBe("name IN ('m')");
      expect(rec.seen[0]?.headers.authorization).toBe(`Basic ${Buffer.from('bob:hunter2').toString('base64')}`);

      rec.seen.length = 0;
      await new MlflowClient({ trackingUri: rec.url }).fetchSnapshot();
      expect(rec.seen[0]?.headers.authorization).toBeUndefined();
    } finally {
      await rec.close();
    }
  });

  it('reads named models in batches a few at a time, and one by one from a server that refuses IN', async () => {
    let inFlight = 0;
    let most = 0;
    const searched: string[] = [];
    const server: Server = createServer((req, res) => {
      const url = new URL(req.url ?? '/', 'http://mlflow');
      const filter = url.searchParams.get('filter') ?? '';
      inFlight++;
      most = Math.max(most, inFlight);
      const answer = (status: number, body: object): void => {
        // Answered a little later, so that requests sent together are in flight together.
        setTimeout(() => {
          inFlight--;
          res.writeHead(status, { 'content-type': 'application/json' });
          res.end(JSON.stringify(body));
        }, 5);
      };
      const listed = [...filter.matchAll(/'([^']+)'/g)].map((m) => m[1] as string).filter((n) => n.startsWith('n-'));
      if (url.pathname.endsWith('/registered-models/search')) {
        searched.push(filter);
        if (url.pathname.startsWith('/refuse') && filter.includes(' IN (')) return answer(400, { error_code: 'INVALID_PARAMETER_VALUE', message: 'IN is not supported' });
        return answer(200, { registered_models: filter.startsWith('tags.') ? [] : listed.map((name) => ({ name, aliases: [{ alias: 'champion', version: '1' }] })) });
      }
      if (url.pathname.endsWith('/registered-models/get')) {
        const name = url.searchParams.get('name') ?? '';
        return answer(200, { registered_model: { name, aliases: [{ alias: 'champion', version: '1' }] } });
      }
      if (url.pathname.endsWith('/model-versions/search')) {
        const names = listed.length > 0 ? listed : [/name='([^']+)'/.exec(filter)?.[1] ?? ''];
        return answer(200, { model_versions: names.map((name) => ({ name, version: '1', status: 'READY', aliases: ['champion'] })) });
      }
      answer(404, { error_code: 'ENDPOINT_NOT_FOUND', message: url.pathname });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    try {
      const names = Array.from({ length: 420 }, (_, i) => `n-${String(i).padStart(3, '0')}`);
      const batched = await new MlflowClient({ trackingUri: base }).fetchSnapshot(names);
      expect([...batched.models.keys()]).toEqual(names);
      expect(batched.models.get('n-419')?.aliases).toEqual({ champion: '1' });
      // 9 batches of at most 50 names, 4 at a time.
      expect(searched.filter((f) => f.startsWith('name IN ('))).toHaveLength(9);
      expect(most).toBe(4);

      most = 0;
      searched.length = 0;
      const single = await new MlflowClient({ trackingUri: `${base}/refuse` }).fetchSnapshot(names.slice(0, 120));
      expect([...single.models.keys()]).toEqual(names.slice(0, 120));
      expect(single.models.get('n-007')?.versions.map((v) => v.version)).toEqual(['1']);
      expect(most).toBeLessThanOrEqual(4);
    } finally {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });

  it('names a timeout, a refusal and a body that is not JSON, without leaking credentials', async () => {
    const rec = await headerRecorder();
    try {
      const hang = new MlflowClient({ trackingUri: `http://user:hunter2@${rec.url.slice('http://'.length)}/hang`, timeoutMs: 200 });
      const t = (await hang.fetchSnapshot().catch((e: unknown) => e)) as MlflowError;
      expect([t.failure, t.code]).toEqual(['timeout', 'registry.timeout']);
      expect(`${t.toString()} ${t.message}`).not.toContain('hunter2');

      const denied = (await new MlflowClient({ trackingUri: `${rec.url}/denied`, token: 'tok-123' }).fetchSnapshot().catch((e: unknown) => e)) as MlflowError;
      expect([denied.failure, denied.status, denied.mlflowCode]).toEqual(['http_4xx', 403, 'PERMISSION_DENIED']);
      expect(denied.toString()).toBe(`GET ${rec.url}/denied/api/2.0/mlflow/registered-models/search: MLflow answered 403 PERMISSION_DENIED: Permission denied`);

      const garbage = (await new MlflowClient({ trackingUri: `${rec.url}/garbage` }).fetchSnapshot().catch((e: unknown) => e)) as MlflowError;
      expect(garbage.failure).toBe('bad_response');
      expect(garbage.message).toContain('not JSON');

      const shape = (await new MlflowClient({ trackingUri: `${rec.url}/shape` }).fetchSnapshot().catch((e: unknown) => e)) as MlflowError;
      expect(shape.failure).toBe('bad_response');
      expect(shape.toString()).toBe(`GET ${rec.url}/shape/api/2.0/mlflow/registered-models/search: MLflow's answer is not the expected shape at registered_models.0.name: Invalid input: expected string, received undefined`);
    } finally {
      await rec.close();
    }
  });

  it('reads its options from the MLFLOW_* environment', () => {
    expect(
      mlflowClientOptionsFromEnv({
        MLFLOW_TRACKING_URI: 'http://mlflow:5000',
        MLFLOW_TRACKING_TOKEN: 't',
        MLFLOW_TRACKING_USERNAME: 'u',
        MLFLOW_TRACKING_PASSWORD: '',
      }),
    ).toEqual({ trackingUri: 'http://mlflow:5000', token: 't', username: 'u', password: undefined });
    expect(() => mlflowClientOptionsFromEnv({})).toThrow(/MLFLOW_TRACKING_URI is not set/);
    expect(() => new MlflowClient({ trackingUri: 'file:///tmp/mlruns' })).toThrow(/must be http or https/);
  });
});

describe('RegistryPoller', () => {
  it('emits on change only, keeps the last snapshot through an outage, and recovers', async () => {
    await createModel('polled', 2);
    await mlflow.admin.setAlias('polled', 'champion', '1');
    const client = new MlflowClient({ trackingUri: mlflow.uri, timeoutMs: 1000 });
    const poller = new RegistryPoller({ client, intervalMs: 200, names: () => ['polled'] });
    const snapshots: RegistrySnapshot[] = [];
    const errors: SyncErrorDetails[] = [];
    poller.on('snapshot', (s) => snapshots.push(s));
    poller.on('syncError', (e) => errors.push(e));
    const okBefore = await metric('flowgate_registry_sync_total', { result: 'ok' });
    const unreachableBefore = await metric('flowgate_registry_sync_errors_total', { reason: 'unreachable' });
    try {
      const first = await poller.start();
      expect(first.ok).toBe(true);
      const synced = await poller.firstSync();
      expect(poller.synced).toBe(true);
      expect(synced.models.get('polled')?.aliases).toEqual({ champion: '1' });
      expect(await metric('flowgate_registry_models')).toBe(1);

      // Several polls of an unchanged registry: still one snapshot event.
      await waitFor('5 more polls', async () => ((await metric('flowgate_registry_sync_total', { result: 'ok' })) >= okBefore + 6 ? true : undefined));
      expect(snapshots).toHaveLength(1);
      expect(poller.current).toBe(synced);
      expect(await metric('flowgate_registry_sync_age_seconds')).toBeLessThan(2);
      expect(await metric('flowgate_registry_last_success_timestamp_seconds')).toBeGreaterThan(Date.now() / 1000 - 5);

      await mlflow.admin.setAlias('polled', 'champion', '2');
      await waitFor('the moved alias', () => (snapshots.length === 2 ? true : undefined), { timeoutMs: 10_000 });
      expect(snapshots[1]?.models.get('polled')?.aliases).toEqual({ champion: '2' });
      expect(poller.current).toBe(snapshots[1]);

      // MLflow goes away: errors are counted and reported, the last snapshot stays.
      const kept = poller.current;
      await mlflow.stop();
      await waitFor('three failed polls', () => (errors.length >= 3 ? true : undefined), { timeoutMs: 20_000 });
      expect(errors[0]?.reason).toBe('unreachable');
      expect(errors[0]?.consecutiveFailures).toBe(1);
      expect(errors[2]?.consecutiveFailures).toBe(3);
      // Backoff: the wait grows (200ms doubling, ±20% jitter).
      expect(errors[2]?.retryInMs ?? 0).toBeGreaterThan(errors[0]?.retryInMs ?? Infinity);
      expect(poller.current).toBe(kept);
      expect(poller.synced).toBe(true);
      expect(poller.lastError?.code).toBe('registry.unreachable');
      expect(await metric('flowgate_registry_sync_errors_total', { reason: 'unreachable' })).toBeGreaterThanOrEqual(unreachableBefore + 3);
      const lastSuccess = poller.lastSuccessAt ?? 0;
      await new Promise((r) => setTimeout(r, 1100));
      expect(await metric('flowgate_registry_sync_age_seconds')).toBeGreaterThanOrEqual(1);
      expect(poller.lastSuccessAt).toBe(lastSuccess);
      expect(snapshots).toHaveLength(2);

      // Back on the same port with the same store: the poller recovers by itself, with nothing new to emit.
      await mlflow.restart();
      await waitFor('recovery', () => (poller.consecutiveFailures === 0 ? true : undefined), { timeoutMs: 30_000 });
      expect(poller.lastError).toBeUndefined();
      expect(poller.lastSuccessAt ?? 0).toBeGreaterThan(lastSuccess);
      expect(snapshots).toHaveLength(2);
      expect(await metric('flowgate_registry_sync_age_seconds')).toBeLessThan(2);

      // And it sees changes made after the outage; pollNow does not wait for the timer. A timer poll may
      // have started while the alias was being set and seen the change first (pollNow runs after it and
      // then finds nothing new), so the answer is checked for its contents, and the change emitted once.
      await mlflow.admin.setAlias('polled', 'challenger', '1');
      const now = await poller.pollNow();
      expect(now.ok && now.snapshot.models.get('polled')?.aliases).toEqual({ challenger: '1', champion: '2' });
      expect(poller.current?.models.get('polled')?.aliases).toEqual({ challenger: '1', champion: '2' });
      expect(snapshots).toHaveLength(3);
    } finally {
      await poller.stop();
    }
  });

  it('re-reads one model between polls, fetches a newly named model on demand, and polls early when a re-read fails', async () => {
    await createModel('refresh-a', 2);
    await createModel('refresh-b', 1);
    await mlflow.admin.setAlias('refresh-a', 'champion', '1');
    const client = new MlflowClient({ trackingUri: mlflow.uri, timeoutMs: 1500 });
    // A poll a minute: anything seen sooner came from refreshModel or ensureModels.
    const poller = new RegistryPoller({ client, intervalMs: 60_000, initialBackoffMs: 300, names: () => ['refresh-a'] });
    const errors: SyncErrorDetails[] = [];
    poller.on('syncError', (e) => errors.push(e));
    try {
      expect((await poller.start()).ok).toBe(true);
      expect([...(poller.current?.models.keys() ?? [])]).toEqual(['refresh-a']);
      const polls = await metric('flowgate_registry_sync_total', { result: 'ok' });

      await mlflow.admin.setAlias('refresh-a', 'champion', '2');
      expect(await poller.refreshModel('refresh-a')).toEqual({ result: 'merged', changed: true, present: true });
      expect(poller.current?.models.get('refresh-a')?.aliases).toEqual({ champion: '2' });
      expect(await poller.refreshModel('refresh-a')).toEqual({ result: 'merged', changed: false, present: true });
      // Not a model this poller fetches: no call at all.
      expect(await poller.refreshModel('refresh-b')).toEqual({ result: 'untracked' });

      await poller.ensureModels(['refresh-a', 'refresh-b']);
      expect([...(poller.current?.models.keys() ?? [])]).toEqual(['refresh-a', 'refresh-b']);
      expect(await metric('flowgate_registry_sync_total', { result: 'ok' })).toBe(polls);
      // From now on polls fetch it too.
      await poller.pollNow();
      expect(poller.current?.models.has('refresh-b')).toBe(true);
      await mlflow.admin.deleteRegisteredModel('refresh-b');
      expect(await poller.refreshModel('refresh-b')).toEqual({ result: 'merged', changed: true, present: false });
      expect(poller.current?.models.has('refresh-b')).toBe(false);

      mlflow.suspend();
      const outcome = await poller.refreshModel('refresh-a', 'webhook');
      expect(outcome.result === 'failed' && outcome.reason).toBe('timeout');
      // The failed re-read brings the next poll forward from a minute to the first retry delay.
      await waitFor('an early poll', () => (errors.length > 0 ? true : undefined), { timeoutMs: 10_000 });
      expect(poller.current?.models.get('refresh-a')?.aliases).toEqual({ champion: '2' });
    } finally {
      mlflow.resume();
      await poller.stop();
    }
  });

  it('counts a registry that stops answering as a timeout', async () => {
    // Long enough for a warm MLflow to answer, short enough to keep the test quick while it is frozen.
    const client = new MlflowClient({ trackingUri: mlflow.uri, timeoutMs: 1500 });
    const poller = new RegistryPoller({ client, intervalMs: 200, names: () => ['polled'] });
    const timeoutsBefore = await metric('flowgate_registry_sync_errors_total', { reason: 'timeout' });
    try {
      expect((await poller.start()).ok).toBe(true);
      mlflow.suspend();
      const outcome = await poller.pollNow();
      expect(outcome.ok ? 'ok' : outcome.reason).toBe('timeout');
      expect(await metric('flowgate_registry_sync_errors_total', { reason: 'timeout' })).toBe(timeoutsBefore + 1);
      expect(poller.current?.models.has('polled')).toBe(true);
    } finally {
      mlflow.resume();
      await poller.stop();
    }
    // After stop, firstSync of a poller that never synced fails instead of hanging.
    const never = new RegistryPoller({ client: new MlflowClient({ trackingUri: `http://127.0.0.1:${await freePort()}` }), intervalMs: 200 });
    const first = await never.start();
    expect(first.ok).toBe(false);
    const waiting = never.firstSync();
    await never.stop();
    await expect(waiting).rejects.toThrow(/stopped/);
  });
});
