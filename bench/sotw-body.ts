/**
 * State-of-the-world body benchmark: the RouteConfiguration of M models (the side-by-side's fixtures, one
 * listener: every model's routes in one resource, 3.2 MB at 1,000 models) made into a DiscoveryResponse body
 * and its first gRPC frame, what the first stream of a push waits for after a change. Each round is a new
 * version (a body not cached yet); prints the median and max per figure, the bytes, and the memory the
 * process holds after the rounds (the bodies stay cached as in serve). Measures, never asserts.
 *
 *   FLOWGATE_LOG_LEVEL=error npx tsx bench/sotw-body.ts [--models 1000] [--rounds 20]
 */
import { loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import { performance } from 'node:perf_hooks';
import { GatewayController } from '../src/control/controller.js';
import { policyFromFiles, type PolicyFileText } from '../src/policy/load.js';
import { registrySnapshotFrom } from '../src/registry/snapshot.js';
import { TypeUrl } from '../src/resources/types.js';
import { SnapshotCache } from '../src/xds/cache.js';
import { framedResponse } from '../src/xds/framing.js';
import { encodeSotwResponse } from '../src/xds/wire.js';
import { modelPolicy, registeredModels } from './peers/fixtures.js';

const { values } = parseArgs({ options: { models: { type: 'string', default: '1000' }, rounds: { type: 'string', default: '20' } } });
const models = Number(values.models);
const rounds = Number(values.rounds);

const files: PolicyFileText[] = [{ file: 'gateway.yaml', text: 'kind: Gateway\nlisteners:\n  - { name: public, address: 0.0.0.0, port: 10000 }\n' }];
for (let i = 0; i < models; i++) files.push({ file: `model-${i}.yaml`, text: modelPolicy(i, 10) });
const load = policyFromFiles('/bench-body', files);
if (!load.ok) throw new Error(load.issues.map((i) => i.message).join('; '));
const cache = new SnapshotCache();
const controller = new GatewayController({ cache, clusterLingerMs: 0, modes: ['ads'] });
controller.setPolicy(load.policy);
controller.setRegistry(registrySnapshotFrom(registeredModels(models, false)));
const snapshot = controller.snapshot('ads');
const routes = snapshot ? [...snapshot.resources(TypeUrl.RouteConfiguration).values()] : [];
if (routes.length === 0) throw new Error('no route configuration built');

const body: number[] = [];
const frame: number[] = [];
let bytes = 0;
for (let r = 0; r < rounds; r++) {
  const t = performance.now();
  const message = encodeSotwResponse(TypeUrl.RouteConfiguration, `bench-${r}`, routes, '1', 'bench');
  const t1 = performance.now();
  const f = framedResponse(message);
  const t2 = performance.now();
  body.push(t1 - t);
  frame.push(t2 - t1);
  bytes = f.byteLength;
}
const stat = (xs: number[]): string => {
  const s = [...xs].sort((a, b) => a - b);
  return `median ${(s[Math.floor(s.length / 2)] ?? NaN).toFixed(2)} ms, max ${(s.at(-1) ?? NaN).toFixed(2)} ms`;
};
const mem = process.memoryUsage();
console.log(`models=${models} route configurations=${routes.length} frame bytes=${bytes} rounds=${rounds} load average ${loadavg().map((x) => x.toFixed(2)).join(' ')}`);
console.log(`  body (a new version)   ${stat(body)}`);
console.log(`  first frame of it      ${stat(frame)}`);
console.log(`  after the rounds: RSS ${(mem.rss / 2 ** 20).toFixed(0)} MB, array buffers ${(mem.arrayBuffers / 2 ** 20).toFixed(0)} MB`);
