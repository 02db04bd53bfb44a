import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, test } from 'vitest';
import YAML from 'yaml';
import { startFlowgate, type FlowgateProcess } from '../harness/flowgate.js';
import { freePorts } from '../harness/ports.js';
import { startProcess, waitFor, type ManagedProcess } from '../harness/process.js';
import { request } from '../harness/traffic.js';
import { startEchoUpstream, type EchoUpstream } from '../harness/upstreams.js';
import { venvBin } from '../harness/venv.js';
import { loadCompose, readRepoFile, repoPath } from './files.js';

/**
 * The compose mTLS setup works end to end, not only on paper: certificates made by deploy/compose/make-certs.sh,
 * the control plane's TLS options exactly as docker-compose.yml passes them (and the filter service's, on the
 * embedded one), the shipped Envoy bootstrap deploy/compose/envoy.yaml and the shipped gateway policy's
 * filterService.tls, with only host names, ports and the certificate directory mapped onto this machine. A
 * request through Envoy to a rate-limited (fail-closed) route proves both mTLS hops: Envoy to xDS, Envoy to the
 * filter service.
 */

let dir: string;
let certs: string;
let flowgate: FlowgateProcess;
let envoy: ManagedProcess;
let echo: EchoUpstream;
let listener = 0;

/** A compose service's `--name value` options whose value is a path under `/certs/`, mapped to the made certificates. */
function tlsOptions(service: string, names: readonly string[], rename: (name: string) => string = (n) => n): string[] {
  const command = loadCompose().services[service]?.command ?? [];
  return names.flatMap((name) => {
    const value = command[command.indexOf(`--${name}`) + 1] ?? '';
    expect(value, `${service} --${name}`).toMatch(/^\/certs\//);
    return [`--${rename(name)}`, value.replace('/certs/', `${certs}/`)];
  });
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'flowgate-compose-mtls-'));
  certs = join(dir, 'certs');
  const made = spawnSync('bash', [repoPath('deploy/compose/make-certs.sh'), certs], { encoding: 'utf8' });
  expect(made.status, made.stderr).toBe(0);
  echo = await startEchoUpstream('compose-v1');
  const [xds, filters, admin, health] = (await freePorts(4)) as [number, number, number, number];
  listener = (await freePorts(1))[0] as number;

  // The shipped policy, on this machine's addresses; the demo model gets a rate limit so Envoy calls the filter service.
  const gateway = YAML.parse(readRepoFile('deploy/compose/policy/gateway.yaml')) as Record<string, unknown> & {
    listeners: { address: string; port: number }[];
    filterService: { address: string; port: number; tls: Record<string, string> };
    upstreams: { allow: string[] };
  };
  gateway.listeners = gateway.listeners.map((l) => ({ ...l, address: '127.0.0.1', port: listener }));
  gateway.filterService.address = '127.0.0.1';
  gateway.filterService.port = filters;
  for (const k of ['ca', 'cert', 'key']) gateway.filterService.tls[k] = (gateway.filterService.tls[k] ?? '').replace('/etc/flowgate/certs/', `${certs}/`);
  gateway.upstreams.allow = [`127.0.0.1:${echo.port}`];
  mkdirSync(join(dir, 'policy'));
  writeFileSync(join(dir, 'policy', 'gateway.yaml'), YAML.stringify(gateway));
  writeFileSync(join(dir, 'policy', 'fraud-detector.yaml'), `${readRepoFile('deploy/compose/policy/fraud-detector.yaml')}rateLimits: [{ requests: 1000, per: minute }]\n`);
  const tag = { 'flowgate.address': `127.0.0.1:${echo.port}` };
  writeFileSync(join(dir, 'registry.json'), JSON.stringify({ models: [{ name: 'fraud-detector', aliases: { champion: '1' }, versions: [{ version: '1', tags: tag }] }] }));

  flowgate = await startFlowgate({
    policyDir: join(dir, 'policy'),
    registryFile: join(dir, 'registry.json'),
    xdsPort: xds,
    filtersPort: filters,
    name: 'flowgate-compose-mtls',
    extraArgs: [
      ...tlsOptions('control-plane', ['xds-tls-cert', 'xds-tls-key', 'xds-tls-client-ca']),
      ...tlsOptions('filters', ['tls-cert', 'tls-key', 'tls-client-ca'], (n) => `filters-${n}`),
    ],
  });

  // The shipped bootstrap: control-plane -> 127.0.0.1 (its certificate's name stays what Envoy verifies).
  const bootstrap = readRepoFile('deploy/compose/envoy.yaml')
    .replaceAll('/etc/flowgate/certs/', `${certs}/`)
    .replace('address: control-plane\n', 'address: 127.0.0.1\n')
    .replace('port_value: 18000', `port_value: ${xds}`)
    .replace('port_value: 9901', `port_value: ${admin}`)
    .replace('port_value: 9902', `port_value: ${health}`)
    .replace('type: STRICT_DNS', 'type: STATIC');
  expect(bootstrap).toContain('sni: control-plane');
  const file = join(dir, 'envoy.yaml');
  writeFileSync(file, bootstrap);
  envoy = startProcess('envoy-compose-mtls', venvBin('envoy'), ['-c', file, '--use-dynamic-base-id', '--drain-time-s', '1']);
  await waitFor('the compose Envoy to be ready', async () => ((await request(`http://127.0.0.1:${health}/ready`)).status === 200 ? true : undefined), {
    timeoutMs: 30_000,
    describe: () => envoy.tail(30),
  });
}, 120_000);

afterAll(async () => {
  await envoy?.stop();
  await flowgate?.stop();
  await echo?.close();
});

test('Envoy gets its config over mTLS and calls the fail-closed filter service over mTLS', async () => {
  const url = `http://127.0.0.1:${listener}/models/fraud-detector`;
  const answer = await waitFor('the demo route through the filter service', async () => {
    const r = await request(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"dataframe_records":[{"amount":1}]}' });
    return r.status === 200 ? r : undefined;
  }, { describe: () => envoy.tail(30) });
  expect(answer.headers.get('x-upstream')).toBe('compose-v1');
  const nodes = (await (await fetch(`${flowgate.adminUrl}/debug/nodes`)).json()) as { node: string }[];
  expect(nodes.map((n) => n.node)).toContain('compose-envoy');
  expect(readFileSync(flowgate.process.logFile, 'utf8')).toMatch(/"tls":"mutual"[^\n]*filter service listening|filter service listening[^\n]*"tls":"mutual"/);
});
