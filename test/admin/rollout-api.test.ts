import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, describe, expect, test } from 'vitest';
import { registerRolloutApi } from '../../src/admin/rollouts.js';
import { AdminToken, loadAdminToken } from '../../src/admin/token.js';
import { buildGatewayIR } from '../../src/ir/build.js';
import { policyFromFiles } from '../../src/policy/load.js';
import { AdminServer } from '../../src/observability/admin-server.js';
import { registrySnapshotFrom } from '../../src/registry/snapshot.js';
import { callWebhook } from '../../src/rollout/webhooks.js';
import { registerSecrets } from '../harness/secrets.js';

/** The rollouts admin API's guard (no mutation without the token, on loopback too) and the rollout webhooks' reading of answers. */

const TOKEN = 'unit-admin-token-0123456789abcdef';
registerSecrets(TOKEN);

const load = policyFromFiles('policy', [
  { file: 'm.yaml', text: 'kind: Model\nname: fraud\nupstream: { addressTemplate: "127.0.0.1:90{version}" }\ntraffic: { stable: { alias: champion } }\n---\nkind: Rollout\nmodel: fraud\n' },
]);
if (!load.ok) throw new Error('policy');
const registry = registrySnapshotFrom([
  { name: 'fraud', description: '', tags: {}, aliases: { champion: '1', challenger: '2' }, versions: [1, 2].map((v) => ({ name: 'fraud', version: String(v), status: 'READY', stage: 'None', aliases: [], tags: {}, source: '', runId: '', createdAt: 0, updatedAt: 0 })) },
]);
const ir = buildGatewayIR(load.policy, registry).ir;

const servers: { close(): Promise<void> }[] = [];
afterAll(async () => {
  for (const s of servers) await s.close();
});

async function admin(token: AdminToken | undefined): Promise<string> {
  const a = new AdminServer();
  registerRolloutApi(a, { ir: () => ir, lease: undefined, timeline: undefined, writer: undefined, token, source: 'als' });
  const port = await a.listen(0);
  servers.push(a);
  return `http://127.0.0.1:${port}`;
}

describe('rollouts admin API', () => {
  test('reads need no token; the view comes from the IR', async () => {
    const base = await admin(undefined);
    const list = (await (await fetch(`${base}/api/rollouts`)).json()) as { rollouts: { model: string; phase: string; canaryVersion: string; steps: number[] }[]; writable: boolean };
    expect(list.writable).toBe(false);
    expect(list.rollouts).toEqual([expect.objectContaining({ model: 'fraud', phase: 'pending', canaryVersion: '2', steps: [10, 20, 30, 40, 50] })]);
    expect((await fetch(`${base}/api/rollouts/nope`)).status).toBe(404);
  });

  test('without a configured token every command is refused with 403, even from loopback', async () => {
    const base = await admin(undefined);
    const res = await fetch(`${base}/api/rollouts/fraud/pause`, { method: 'POST', headers: { authorization: `Bearer ${TOKEN}` } });
    expect(res.status).toBe(403);
    expect(((await res.json()) as { error: string }).error).toBe('admin_token_not_configured');
  });

  test('a missing or wrong token is 401; the right one passes the guard (then 409: no MLflow to write to)', async () => {
    const base = await admin(new AdminToken(TOKEN));
    expect((await fetch(`${base}/api/rollouts/fraud/pause`, { method: 'POST' })).status).toBe(401);
    expect((await fetch(`${base}/api/rollouts/fraud/pause`, { method: 'POST', headers: { authorization: `Bearer ${TOKEN}x` } })).status).toBe(401);
    const ok = await fetch(`${base}/api/rollouts/fraud/pause`, { method: 'POST', headers: { authorization: `Bearer ${TOKEN}` } });
    expect(ok.status).toBe(409);
    expect(((await ok.json()) as { error: string }).error).toBe('no_registry_writer');
    expect((await fetch(`${base}/api/rollouts/fraud/explode`, { method: 'POST', headers: { authorization: `Bearer ${TOKEN}` } })).status).toBe(404);
    expect((await fetch(`${base}/api/rollouts/fraud/pause`, { method: 'PUT' })).status).toBe(405);
  });

  test('tokens: from the environment, at least 16 characters', () => {
    expect(loadAdminToken(undefined, {})).toBeUndefined();
    expect(loadAdminToken(undefined, { FLOWGATE_ADMIN_TOKEN: TOKEN })?.matches(TOKEN)).toBe(true);
    expect(() => new AdminToken('short')).toThrow(/at least 16/);
  });
});

describe('rollout webhooks', () => {
  test('2xx goes on; another status or no answer in time does not', async () => {
    const bodies: unknown[] = [];
    let status = 200;
    const server: Server = createServer((req, res) => {
      let text = '';
      req.on('data', (c: Buffer) => (text += c.toString()));
      req.on('end', () => {
        bodies.push(JSON.parse(text));
        if (status === 0) return; // never answers
        res.writeHead(status).end(status === 200 ? '' : 'not yet');
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    servers.push({ close: () => new Promise<void>((r) => { server.closeAllConnections(); server.close(() => r()); }) });
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/gate`;
    const payload = { type: 'confirm-promotion', model: 'fraud', canaryVersion: '2', stableVersion: '1', phase: 'progressing', step: 4, weight: 50 } as const;
    expect(await callWebhook({ url, timeoutMs: 1000 }, payload)).toEqual({ ok: true, detail: 'confirm-promotion webhook answered 200' });
    status = 409;
    expect(await callWebhook({ url, timeoutMs: 1000 }, payload)).toEqual({ ok: false, detail: 'confirm-promotion webhook answered 409: not yet' });
    status = 0;
    const timedOut = await callWebhook({ url, timeoutMs: 200 }, payload);
    expect(timedOut.ok).toBe(false);
    expect(timedOut.detail).toMatch(/did not answer within 200ms/);
    expect(bodies[0]).toEqual(payload);
  });
});
