import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, renameSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startEnvoy, type EnvoyProcess } from '../harness/envoy.js';
import { cliArgs, startFlowgate, type FlowgateProcess } from '../harness/flowgate.js';
import { freePort } from '../harness/ports.js';
import { waitFor } from '../harness/process.js';
import { upstreamOf } from '../harness/traffic.js';
import { startEchoUpstream, type EchoUpstream } from '../harness/upstreams.js';
import { repoRoot } from '../harness/venv.js';

/**
 * `flowgate serve` builds ADS snapshots from the start and the gRPC and delta gRPC modes' once an Envoy of
 * that mode connects (bootstrapped with `--no-ads`, `--no-ads --delta`). Real Envoys in both modes get the
 * configuration `flowgate render --mode` prints for the same inputs, and follow a registry change after it.
 */

let flowgate: FlowgateProcess;
const upstreams: EchoUpstream[] = [];
let dir: string;
let url: string;

const registryFile = (): string => join(dir, 'registry.json');

function writeRegistry(champion: string): void {
  const models = [
    {
      name: 'scorer',
      aliases: { champion },
      versions: upstreams.map((u, i) => ({ version: String(i + 1), tags: { 'flowgate.address': `127.0.0.1:${u.port}` } })),
    },
  ];
  // Written whole and renamed into place, as a deploy tool does.
  writeFileSync(`${registryFile()}.tmp`, JSON.stringify({ models }));
  renameSync(`${registryFile()}.tmp`, registryFile());
}

async function versions(): Promise<Record<string, string>> {
  return ((await (await fetch(`${flowgate.adminUrl}/debug/snapshot`)).json()) as { versions: Record<string, string> }).versions;
}

function rendered(mode: string): string {
  const [cmd, args] = cliArgs(['render', '--policy', join(dir, 'policy'), '--registry', registryFile(), '--mode', mode]);
  const r = spawnSync(cmd, args, { cwd: repoRoot, encoding: 'utf8' });
  expect(r.status, r.stderr).toBe(0);
  return (JSON.parse(r.stdout) as { version: string }).version;
}

beforeAll(async () => {
  for (const name of ['v1', 'v2']) upstreams.push(await startEchoUpstream(name));
  dir = mkdtempSync(join(tmpdir(), 'flowgate-modes-'));
  mkdirSync(join(dir, 'policy'));
  const listener = await freePort();
  writeFileSync(join(dir, 'policy', 'gateway.yaml'), `kind: Gateway\nlisteners: [{ name: public, address: 127.0.0.1, port: ${listener} }]\n`);
  writeFileSync(join(dir, 'policy', 'scorer.yaml'), 'kind: Model\nname: scorer\nupstream: { versionTag: flowgate.address }\ntraffic: { stable: { alias: champion } }\n');
  writeRegistry('1');
  url = `http://127.0.0.1:${listener}/models/scorer`;
  flowgate = await startFlowgate({ policyDir: join(dir, 'policy'), registryFile: registryFile(), name: 'flowgate-modes' });
}, 120_000);

afterAll(async () => {
  await flowgate?.stop();
  for (const u of upstreams) await u.close();
});

describe('xDS modes built when an Envoy of that mode connects', () => {
  test('before any Envoy, only ADS (and proxyless) is built', async () => {
    expect(Object.keys(await versions()).sort()).toEqual(['ads', 'proxyless']);
  });

  test.each([
    { mode: 'grpc', ads: false, delta: false },
    { mode: 'delta-grpc', ads: false, delta: true },
  ])('an Envoy on $mode gets what render prints for its mode, and follows a registry change', async ({ mode, ads, delta }) => {
    writeRegistry('1');
    await waitFor('the registry at champion 1', async () => ((await versions()).ads === rendered('ads') ? true : undefined), { timeoutMs: 20_000 });
    let envoy: EnvoyProcess | undefined;
    try {
      envoy = await startEnvoy({ nodeId: `e2e-modes-${mode}`, nodeCluster: 'modes', xdsHost: '127.0.0.1', xdsPort: flowgate.xdsPort, ads, delta });
      await waitFor(`traffic through the ${mode} Envoy`, async () => ((await upstreamOf(url, { method: 'POST', body: '{}' })) === 'v1' ? true : undefined), {
        timeoutMs: 30_000,
        describe: () => `${flowgate.process.tail(20)}\n${envoy?.process.tail(20) ?? ''}`,
      });
      expect((await versions())[mode]).toBe(rendered(mode));

      writeRegistry('2');
      await waitFor(`the ${mode} Envoy on v2`, async () => ((await upstreamOf(url, { method: 'POST', body: '{}' })) === 'v2' ? true : undefined), { timeoutMs: 30_000 });
      expect((await versions())[mode]).toBe(rendered(mode));
      expect(flowgate.logLines().some((l) => l.msg === 'an xDS client of this mode connected: its snapshots are built from now on' && l.mode === mode)).toBe(true);
    } finally {
      await envoy?.stop();
    }
  }, 90_000);
});
