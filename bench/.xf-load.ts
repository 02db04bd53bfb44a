import { policyFromFiles, type PolicyFileText } from '../src/policy/load.js';
import { modelPolicy } from './peers/fixtures.js';
const GATEWAY = ['kind: Gateway', 'listeners:', '  - { name: public, address: 0.0.0.0, port: 10000 }', ''].join('\n');
function files(models: number, edited = -1, w = 20): PolicyFileText[] {
  const f: PolicyFileText[] = [{ file: 'gateway.yaml', text: GATEWAY }];
  for (let i = 0; i < models; i++) f.push({ file: `model-${i}.yaml`, text: modelPolicy(i, i === edited ? w : 10) });
  return f;
}
policyFromFiles('/d', files(1000));
const { Session } = await import('node:inspector/promises');
const s = new Session(); s.connect(); await s.post('Profiler.enable'); await s.post('Profiler.start');
const times: number[] = [];
for (let r = 0; r < 20; r++) { const t = performance.now(); const l = policyFromFiles('/d', files(1000, 250, 20 + r)); if (!l.ok) throw new Error('x'); times.push(performance.now() - t); }
const { profile } = await s.post('Profiler.stop');
console.log(times.map((x) => x.toFixed(1)).join(' '));
const self = new Map<string, number>();
const nodes = profile.nodes; const dt = profile.timeDeltas!; const samples = profile.samples!;
const byId = new Map(nodes.map((n) => [n.id, n]));
for (let i = 0; i < samples.length; i++) { const n = byId.get(samples[i]!)!; const k = `${n.callFrame.functionName}@${n.callFrame.url.split('/').slice(-2).join('/')}:${n.callFrame.lineNumber}`; self.set(k, (self.get(k) ?? 0) + dt[i]!); }
console.log([...self].sort((a, b) => b[1] - a[1]).slice(0, 25).map(([k, v]) => `${(v / 1000).toFixed(1)}ms ${k}`).join('\n'));
