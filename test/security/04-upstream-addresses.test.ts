import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import YAML from 'yaml';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { envoyBootstrapJson, HEALTH_PATH, isLoopbackAddress } from '../../src/bootstrap/bootstrap.js';
import { buildGatewayIR } from '../../src/ir/build.js';
import { parseAddressPattern, patternMatches } from '../../src/policy/address-pattern.js';
import { policyFromFiles } from '../../src/policy/load.js';
import { loadRegistryFile } from '../../src/registry/file.js';
import { startEnvoy, type EnvoyProcess } from '../harness/envoy.js';
import { cliArgs } from '../harness/flowgate.js';
import { startGateway, type TestGateway } from '../harness/gateway.js';
import { freePorts } from '../harness/ports.js';
import { waitFor } from '../harness/process.js';
import { startEchoUpstream, type EchoUpstream } from '../harness/upstreams.js';
import { repoRoot } from '../harness/venv.js';

/**
 * Item 4: a registry tag could point a public route at anything, Envoy's own admin port included: a GET on
 * the public listener then dumped Envoy's config (and a POST could /quitquitquit it). Now every upstream
 * address from the registry or a template goes through the IR's upstream guard (src/ir/upstream-guard.ts);
 * a refused one is an address_refused alert and its version is not live. Proven with real Envoy: hostile
 * tags for Envoy's admin port (in several spellings), the control plane's own ports and the listener itself.
 * And no bootstrap Flowgate makes binds the admin interface beyond loopback.
 */

let gateway: TestGateway;
let echo: EchoUpstream;

const HOSTILE = ['admin', 'admin-mapped', 'admin-localhost', 'admin-zero', 'listener', 'xds'] as const;

function registry(ports: { envoyAdmin: number; listener: number; xds: number }, extra: Record<string, string> = {}): unknown {
  const tags: Record<(typeof HOSTILE)[number], string> = {
    admin: `127.0.0.1:${ports.envoyAdmin}`,
    'admin-mapped': `[::ffff:127.0.0.1]:${ports.envoyAdmin}`,
    'admin-localhost': `localhost:${ports.envoyAdmin}`,
    'admin-zero': `0.0.0.0:${ports.envoyAdmin}`,
    listener: `127.0.0.1:${ports.listener}`,
    xds: `127.0.0.1:${ports.xds}`,
  };
  const models = Object.entries({ ...tags, ...extra }).map(([name, address]) => ({ name: `evil-${name}`, versions: [{ version: '1', tags: { 'flowgate.address': address } }] }));
  return {
    models: [
      ...models,
      { name: 'good', versions: [{ version: '1' }] },
      { name: 'canaried', versions: [{ version: '1', tags: { 'flowgate.address': `127.0.0.1:${echo.port}` } }, { version: '2', tags: { 'flowgate.address': tags.admin } }] },
    ],
  };
}

const evilModel = (name: string): string =>
  `---\nkind: Model\nname: evil-${name}\nupstream: { versionTag: flowgate.address }\ntraffic: { stable: { version: "1" } }\n`;

beforeAll(async () => {
  echo = await startEchoUpstream('sec04');
  gateway = await startGateway({
    name: 'sec04',
    policy: ({ listener, filters, envoyAdmin }) => ({
      'gateway.yaml': `kind: Gateway\nlisteners: [{ name: public, address: 127.0.0.1, port: ${listener} }]\nfilterService: { address: 127.0.0.1, port: ${filters} }\nupstreams: { envoyAdminPort: ${envoyAdmin} }\n`,
      'models.yaml':
        `kind: Model\nname: good\nupstream: { addressTemplate: "127.0.0.1:${echo.port}" }\ntraffic: { stable: { version: "1" } }\n` +
        `---\nkind: Model\nname: canaried\nupstream: { versionTag: flowgate.address }\ntraffic: { stable: { version: "1" }, canary: { version: "2", weight: 50 } }\n` +
        [...HOSTILE, 'cp-admin'].map(evilModel).join(''),
    }),
    // evil-cp-admin starts at the echo upstream; its tag is changed to the control plane's admin port later.
    registry: (ports) => registry(ports, { 'cp-admin': `127.0.0.1:${echo.port}` }),
  });
  await waitFor('the good route', async () => ((await gateway.send('/models/good')).status === 200 ? true : undefined));
  expect((await gateway.send('/models/evil-cp-admin')).status).toBe(200);
}, 90_000);

afterAll(async () => {
  await gateway?.stop();
  await echo?.close();
});

describe('through real Envoy', () => {
  test.each(HOSTILE)("a tag naming %s does not make a live version: the public route answers 503, never the target's answer", async (name) => {
    for (const path of [`/models/evil-${name}/config_dump`, `/models/evil-${name}/server_info`]) {
      const r = await gateway.send(path);
      expect(r.status, r.text.slice(0, 200)).toBe(503);
      expect(JSON.parse(r.text)).toMatchObject({ error: 'no_live_version' });
      expect(r.text).not.toContain('configs');
    }
    expect(await gateway.flowgate.metric(`flowgate_model_alerts{model="evil-${name}",code="address_refused"}`)).toBe(1);
  });

  test("a tag moved later to the control plane's own admin port is refused; the version live before keeps serving", async () => {
    const adminPort = Number(new URL(gateway.flowgate.adminUrl).port);
    gateway.writeRegistry(registry(gateway.ports, { 'cp-admin': `127.0.0.1:${adminPort}` }));
    await waitFor('the alert for the control plane admin port', async () =>
      (await gateway.flowgate.metric('flowgate_model_alerts{model="evil-cp-admin",code="address_refused"}')) === 1 ? true : undefined,
    );
    // A registry mistake never takes a model offline: the last live version (the echo upstream) is kept.
    expect(await gateway.flowgate.metric('flowgate_model_alerts{model="evil-cp-admin",code="kept_last_live"}')).toBe(1);
    const ir = (await (await fetch(`${gateway.flowgate.adminUrl}/debug/ir`)).json()) as { models: { name: string; live: { address: { port: number } }[] }[] };
    expect(ir.models.find((m) => m.name === 'evil-cp-admin')?.live.map((l) => l.address.port)).toEqual([echo.port]);
    for (let i = 0; i < 5; i++) {
      const r = await gateway.send('/models/evil-cp-admin/debug/ir');
      expect(r.headers.get('x-upstream')).toBe('sec04');
      expect(r.text).not.toContain('policyHash');
    }
  });

  test('a canary on the admin port is not routed: every request reaches the stable version', async () => {
    for (let i = 0; i < 20; i++) {
      const r = await gateway.send('/models/canaried/config_dump');
      expect(r.status).toBe(200);
      expect(r.headers.get('x-upstream')).toBe('sec04');
    }
    expect(await gateway.flowgate.metric('flowgate_model_alerts{model="canaried",code="address_refused"}')).toBe(1);
    expect(await gateway.flowgate.metric('flowgate_model_alerts{model="canaried",code="canary_unresolved"}')).toBe(1);
  });

  test('Envoy itself was reachable all along on its loopback admin port (the target was real)', async () => {
    expect((await gateway.envoy.admin('/server_info')).length).toBeGreaterThan(0);
  });
});

describe('the IR keeps no refused address from before', () => {
  test('a kept-last-live version whose address is denied now is dropped', async () => {
    const files = (deny: string) => [
      { file: 'g.yaml', text: `kind: Gateway\nlisteners: [{ name: public, port: 10000 }]\nupstreams: { deny: [${deny}] }\n` },
      { file: 'm.yaml', text: 'kind: Model\nname: m\nupstream: { versionTag: addr }\ntraffic: { stable: { alias: champion } }\n' },
    ];
    const before = policyFromFiles('p', files(''));
    const after = policyFromFiles('p', files('"10.9.0.0/16"'));
    if (!before.ok || !after.ok) throw new Error('policy does not load');
    const dir = mkdtempSync(join(tmpdir(), 'flowgate-sec04-'));
    const reg = async (alias: boolean) => {
      const file = join(dir, `r-${alias}.json`);
      writeFileSync(file, JSON.stringify({ models: [{ name: 'm', aliases: alias ? { champion: '1' } : {}, versions: [{ version: '1', tags: { addr: '10.9.1.1:80' } }] }] }));
      return loadRegistryFile(file);
    };
    const first = buildGatewayIR(before.policy, await reg(true)).ir;
    expect(first.models[0]?.live.map((l) => l.version)).toEqual(['1']);
    // The alias is gone (stable unresolved) and the address is now denied: nothing is kept.
    const next = buildGatewayIR(after.policy, await reg(false), first).ir;
    expect(next.models[0]?.live).toEqual([]);
    expect(next.alerts.map((a) => a.code)).toContain('no_live_version');
  });
});

describe('Gateway.upstreams patterns', () => {
  const matches = (pattern: string, host: string, port: number): boolean => {
    const p = parseAddressPattern(pattern);
    if ('error' in p) throw new Error(p.error);
    const family = host.includes(':') ? 'ipv6' : 'ipv4';
    return patternMatches(p, /^[\d.:a-f]+$/.test(host) ? { ip: host, family } : { name: host }, port);
  };

  test('CIDRs match addresses (IPv4-mapped IPv6 too), names match names, ports and ranges narrow both', () => {
    expect(matches('10.0.0.0/8', '10.2.3.4', 1)).toBe(true);
    expect(matches('10.0.0.0/8', '::ffff:10.2.3.4', 1)).toBe(true);
    expect(matches('127.0.0.1:8000-8999', '127.0.0.1', 8080)).toBe(true);
    expect(matches('127.0.0.1:8000-8999', '127.0.0.1', 9901)).toBe(false);
    expect(matches('[fd00::/8]:443', 'fd12::1', 443)).toBe(true);
    expect(matches('*.models.svc', 'a.models.svc', 80)).toBe(true);
    expect(matches('*.models.svc', 'models.svc', 80)).toBe(false);
    expect(matches('*.models.svc', 'evilmodels.svc', 80)).toBe(false);
    expect(matches('10.0.0.0/8', 'ten.example', 80)).toBe(false);
  });

  test('a malformed pattern is a policy issue at its line', () => {
    const load = policyFromFiles('p', [{ file: 'g.yaml', text: 'kind: Gateway\nupstreams:\n  allow: ["10.0.0.0/33", "bad_name", "x:99999"]\n' }]);
    expect(load.ok).toBe(false);
    if (!load.ok) expect(load.issues.map((i) => [i.line, i.path])).toEqual([[3, 'upstreams.allow[0]'], [3, 'upstreams.allow[1]'], [3, 'upstreams.allow[2]']]);
  });
});

describe('Envoy admin is never exposed by a bootstrap Flowgate makes', () => {
  let envoy: EnvoyProcess;
  let health = 0;

  beforeAll(async () => {
    [health] = (await freePorts(1)) as [number];
    envoy = await startEnvoy({ nodeId: 'sec04-health', nodeCluster: 'security', xdsHost: '127.0.0.1', xdsPort: gateway.ports.xds, health: { address: '127.0.0.1', port: health } });
  }, 60_000);

  afterAll(async () => {
    await envoy?.stop();
  });

  test('flowgate bootstrap refuses a non-loopback admin address', () => {
    const [cmd, args] = cliArgs(['bootstrap', '--node-id', 'x', '--admin-address', '0.0.0.0']);
    const r = spawnSync(cmd, args, { cwd: repoRoot, encoding: 'utf8' });
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(/must be loopback/);
    for (const address of ['0.0.0.0', '::', '10.0.0.1', '::ffff:127.0.0.1']) {
      expect(() => envoyBootstrapJson({ nodeId: 'x', nodeCluster: 'y', xdsHost: '127.0.0.1', xdsPort: 1, adminAddress: address })).toThrow(/must be loopback/);
    }
    expect(() => envoyBootstrapJson({ nodeId: 'x', nodeCluster: 'y', xdsHost: '127.0.0.1', xdsPort: 1, adminAddress: '::1' })).not.toThrow();
  });

  test('the health listener answers /ready and nothing of the admin interface', async () => {
    const base = `http://127.0.0.1:${health}`;
    await waitFor('the health listener', async () => ((await fetch(`${base}${HEALTH_PATH}`).catch(() => undefined))?.status === 200 ? true : undefined));
    for (const path of ['/config_dump', '/server_info', '/stats', '/quitquitquit']) {
      const res = await fetch(`${base}${path}`, { method: path === '/quitquitquit' ? 'POST' : 'GET' });
      expect(res.status, path).toBe(404);
    }
    expect((await envoy.admin('/server_info')).length).toBeGreaterThan(0);
  });

  test('every bootstrap shipped in envoy/ and deploy/ binds admin to loopback only', () => {
    const files = [
      ...readdirSync(join(repoRoot, 'envoy')).filter((f) => f.endsWith('.yaml')).map((f) => join(repoRoot, 'envoy', f)),
      join(repoRoot, 'deploy', 'compose', 'envoy.yaml'),
    ];
    const docs = files.map((f) => YAML.parse(readFileSync(f, 'utf8')) as { admin: { address: { socket_address: { address: string } } } });
    const k8s = YAML.parse(readFileSync(join(repoRoot, 'deploy', 'k8s', '40-envoy-bootstrap.yaml'), 'utf8')) as { data: { 'envoy.yaml': string } };
    docs.push(YAML.parse(k8s.data['envoy.yaml']) as (typeof docs)[number]);
    expect(docs.length).toBeGreaterThanOrEqual(7);
    for (const d of docs) expect(isLoopbackAddress(d.admin.address.socket_address.address)).toBe(true);
  });
});
