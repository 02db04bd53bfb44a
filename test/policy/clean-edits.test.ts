import { describe, expect, test } from 'vitest';
import { formatIssues } from '../../src/policy/format.js';
import { policyFromFiles, policyLoadCounts, type PolicyFileText, type PolicyLoad } from '../../src/policy/load.js';
import { seededRandom } from '../harness/prng.js';

/**
 * The clean-edit index (src/policy/clean-edits.ts) lets an edit of a clean policy skip the cross-file checks.
 * It must never accept what the checks would refuse: every load here is compared with the same files loaded
 * under a directory seen for the first time (no index: the checks judge), and must give the same answer,
 * the same issues and the same policy hash.
 */

/** What a load answers, as a caller sees it (the directory itself left out). */
function answer(load: PolicyLoad): string {
  if (!load.ok) return `rejected\n${formatIssues(load.issues, 'policy')}`;
  const p = load.policy;
  return `ok ${p.hash} ${p.files.join(',')} models=${[...p.models.keys()].join(',')} consumers=${[...p.consumers.keys()].join(',')}`;
}

let fresh = 0;
/** The files loaded as `dir` (which has an index after a clean load) and as a new directory; both answers. */
function loadBoth(dir: string, files: readonly PolicyFileText[]): { viaIndex: string; checked: string } {
  const viaIndex = answer(policyFromFiles(dir, files));
  const checked = answer(policyFromFiles(`fresh-${++fresh}`, files));
  return { viaIndex, checked };
}

const GATEWAY = (split: boolean): string =>
  [
    'kind: Gateway',
    'listeners: [{ name: public, port: 10000 }, { name: internal, port: 10001 }]',
    'auth:',
    '  jwt:',
    '    - { name: corp, issuer: "https://idp.example.com/", jwksUri: "https://idp.example.com/jwks" }',
    ...(split ? ['traffic: { split: endpoints }'] : []),
    '',
  ].join('\n');

const DIGESTS = ['a'.repeat(64), 'b'.repeat(64), 'c'.repeat(64), 'd'.repeat(64), 'e'.repeat(64), 'f'.repeat(64)];

/**
 * Random policy files over a small vocabulary, so names, routes, key ids, digests and subjects clash now and
 * then, references miss now and then, and Pipelines, Rollouts and proxyless Models come and go.
 */
class PolicyFuzz {
  constructor(private readonly rnd: () => number) {}

  private pick<T>(items: readonly T[]): T {
    return items[Math.floor(this.rnd() * items.length)] as T;
  }

  /** True with probability p. */
  private chance(p: number): boolean {
    return this.rnd() < p;
  }

  model(i: number): string {
    const name = this.chance(0.02) ? this.pick(['m0', 'm1', 'p0']) : `m${i}`;
    const lines = ['kind: Model', `name: ${name}`, 'upstream: { addressTemplate: "127.0.0.1:90{version}" }'];
    if (this.chance(0.04)) lines.push('protocol: grpc', `proxyless: { target: ${this.pick(['t0', 't1', `t${i}`])} }`);
    if (this.chance(0.5)) {
      const listener = this.chance(0.02) ? 'nowhere' : this.pick(['public', 'internal']);
      const prefix = this.chance(0.03) ? '/shared' : `/p${i}`;
      lines.push(`routes: [{ listener: ${listener}, pathPrefix: ${prefix}, hosts: ["${this.pick(['*', 'a.example'])}"] }]`);
    }
    if (!lines.includes('protocol: grpc') && this.chance(0.4)) {
      const consumers = ['c0', 'c1', 'c2', 'c3'].filter(() => this.chance(0.4));
      if (this.chance(0.02)) consumers.push('c9');
      lines.push(`access: { consumers: [${consumers.join(', ')}] }`);
    }
    const sticky = this.chance(0.15) ? `, sticky: { header: ${this.chance(0.1) ? 'authorization' : 'x-user-id'} }` : '';
    lines.push(`traffic: { stable: { alias: champion }${this.chance(0.2) ? ', canary: { alias: challenger, weight: 10 }' : ''}${sticky} }`);
    return `${lines.join('\n')}\n`;
  }

  consumer(i: number): string {
    const name = this.chance(0.02) ? 'c0' : `c${i}`;
    const lines = ['kind: Consumer', `name: ${name}`];
    const id = this.chance(0.03) ? 'k0' : `k${i}`;
    const digest = this.chance(0.03) ? DIGESTS[0] : DIGESTS[i + 1];
    lines.push(`apiKeys: [{ id: ${id}, sha256: ${digest} }]`);
    if (this.chance(0.4)) lines.push(`jwt: { issuer: ${this.chance(0.03) ? 'other' : 'corp'}, subject: ${this.chance(0.03) ? 's0' : `s${i}`} }`);
    if (this.chance(0.5)) {
      const model = this.chance(0.03) ? this.pick(['m9', 'p0']) : this.pick(['m0', 'm1', 'm2', 'm3', 'm4', 'm5']);
      lines.push(`rateLimits: [{ requests: 5, per: minute, model: ${model} }]`);
    }
    return `${lines.join('\n')}\n`;
  }

  pipeline(): string {
    return `kind: Pipeline\nname: p0\nroutes: [{ listener: public }]\nsteps:\n  - { name: a, model: ${this.chance(0.1) ? 'm9' : this.pick(['m0', 'm1'])} }\n`;
  }

  rollout(): string {
    return `kind: Rollout\nmodel: ${this.pick(['m2', 'm3'])}\n`;
  }

  /** Every file that may exist, and its current text (undefined: absent). */
  initial(): Map<string, string | undefined> {
    const files = new Map<string, string | undefined>([['gateway.yaml', GATEWAY(false)]]);
    for (let i = 0; i < 6; i++) files.set(`models/m${i}.yaml`, this.model(i));
    for (let i = 0; i < 4; i++) files.set(`consumers/c${i}.yaml`, this.consumer(i));
    files.set('pipeline.yaml', undefined);
    files.set('rollout.yaml', undefined);
    return files;
  }

  /** Rewrites, removes or restores one file (two, now and then). */
  edit(files: Map<string, string | undefined>): void {
    const names = [...files.keys()];
    for (let n = this.chance(0.1) ? 2 : 1; n > 0; n--) {
      const file = this.pick(names);
      const number = Number(/(\d+)\.yaml$/.exec(file)?.[1] ?? 0);
      let text: string | undefined;
      if (this.chance(0.03)) text = undefined;
      else if (file === 'gateway.yaml') text = GATEWAY(this.chance(0.3));
      else if (file.startsWith('models/')) text = this.model(number);
      else if (file.startsWith('consumers/')) text = this.consumer(number);
      else if (file === 'pipeline.yaml') text = this.chance(0.5) ? this.pipeline() : undefined;
      else text = this.chance(0.5) ? this.rollout() : undefined;
      files.set(file, text);
    }
  }
}

const present = (files: Map<string, string | undefined>): PolicyFileText[] =>
  [...files].flatMap(([file, text]) => (text === undefined ? [] : [{ file, text }])).sort((a, b) => (a.file < b.file ? -1 : 1));

describe('an edit judged by the clean-edit index gets the answer the checks give', () => {
  test.each([1, 2, 3])('random edits, seed %i', (seed) => {
    const fuzz = new PolicyFuzz(seededRandom(seed));
    const files = fuzz.initial();
    const before = policyLoadCounts();
    let accepted = 0;
    let rejected = 0;
    for (let step = 0; step < 300; step++) {
      const { viaIndex, checked } = loadBoth(`fuzz-${seed}`, present(files));
      expect(viaIndex, `seed ${seed}, step ${step}:\n${present(files).map((f) => `# ${f.file}\n${f.text}`).join('')}`).toBe(checked);
      if (checked.startsWith('ok')) accepted++;
      else rejected++;
      fuzz.edit(files);
    }
    const after = policyLoadCounts();
    // Both answers came up, and the index decided a good share of the clean loads on its own.
    expect(accepted).toBeGreaterThan(60);
    expect(rejected).toBeGreaterThan(60);
    expect(after.quick - before.quick).toBeGreaterThan(30);
  });
});

describe('what the index decides and what it leaves to the checks', () => {
  const gateway = { file: 'gateway.yaml', text: GATEWAY(false) };
  const model = (name: string, extra = ''): PolicyFileText => ({
    file: `${name}.yaml`,
    text: `kind: Model\nname: ${name}\nupstream: { addressTemplate: "127.0.0.1:90{version}" }\ntraffic: { stable: { alias: champion } }\n${extra}`,
  });
  const consumer = (name: string, extra = ''): PolicyFileText => ({ file: `${name}.yaml`, text: `kind: Consumer\nname: ${name}\napiKeys: [{ id: ${name}-1, sha256: ${DIGESTS[0]} }]\n${extra}` });
  let dirs = 0;

  /** Loads `base`, then `edited` in the same directory; the second answer and how it was judged. */
  function edit(base: PolicyFileText[], edited: PolicyFileText[]): { answer: string; quick: boolean; checked: string } {
    const dir = `cases-${++dirs}`;
    expect(answer(policyFromFiles(dir, base))).toMatch(/^ok /);
    const before = policyLoadCounts().quick;
    const got = answer(policyFromFiles(dir, edited));
    return { answer: got, quick: policyLoadCounts().quick > before, checked: answer(policyFromFiles(`fresh-${++fresh}`, edited)) };
  }

  test("a Model's routes edited: accepted by the index, with the hash the checks give", () => {
    const r = edit([gateway, model('a'), model('b')], [gateway, model('a', 'routes: [{ listener: internal }]\n'), model('b')]);
    expect(r.quick).toBe(true);
    expect(r.answer).toBe(r.checked);
    expect(r.answer).toMatch(/^ok /);
  });

  test('a route claimed twice by the edit: refused, with the checks\' message', () => {
    const r = edit([gateway, model('a'), model('b')], [gateway, model('a'), model('b', 'routes: [{ listener: public, pathPrefix: /models/a }]\n')]);
    expect(r.quick).toBe(false);
    expect(r.answer).toBe(r.checked);
    expect(r.answer).toContain("is already claimed by Model 'a'");
  });

  test('a Consumer removed while a Model still lets it in: refused', () => {
    const r = edit([gateway, model('a', 'access: { consumers: [c] }\n'), consumer('c')], [gateway, model('a', 'access: { consumers: [c] }\n')]);
    expect(r.answer).toBe(r.checked);
    expect(r.answer).toContain("reference to an unknown consumer 'c'");
  });

  test('a Model renamed while a Consumer limits calls to it: refused', () => {
    const limit = 'rateLimits: [{ requests: 5, per: minute, model: a }]\n';
    const r = edit([gateway, model('a'), consumer('c', limit)], [gateway, { ...model('a2'), file: 'a.yaml' }, consumer('c', limit)]);
    expect(r.answer).toBe(r.checked);
    expect(r.answer).toContain("reference to an unknown model 'a'");
  });

  test('a limit put on a proxyless Model: refused', () => {
    const proxyless = { file: 'g.yaml', text: 'kind: Model\nname: g\nprotocol: grpc\nproxyless: { target: g }\nupstream: { addressTemplate: "127.0.0.1:90{version}" }\ntraffic: { stable: { alias: champion } }\n' };
    const r = edit([gateway, proxyless, consumer('c')], [gateway, proxyless, consumer('c', 'rateLimits: [{ requests: 5, per: minute, model: g }]\n')]);
    expect(r.answer).toBe(r.checked);
    expect(r.answer).toContain('skip the filter service');
  });

  test('a Model a Rollout rolls out, edited: judged by the checks', () => {
    const rollout = { file: 'rollout.yaml', text: 'kind: Rollout\nmodel: a\n' };
    const r = edit([gateway, model('a'), rollout], [gateway, model('a', 'routes: [{ listener: internal }]\n'), rollout]);
    expect(r.quick).toBe(false);
    expect(r.answer).toBe(r.checked);
  });

  test('with Gateway.traffic.split: endpoints, a Model edited to stick on a credential header: refused', () => {
    const split = { file: 'gateway.yaml', text: GATEWAY(true) };
    const r = edit([split, model('a'), model('b')], [split, model('a'), { ...model('b'), text: model('b').text.replace('traffic: { stable: { alias: champion } }', 'traffic: { stable: { alias: champion }, sticky: { header: Authorization } }') }]);
    expect(r.answer).toBe(r.checked);
    expect(r.answer).toContain('Envoy removes');
    expect(r.quick).toBe(false);
  });

  test('an API key given to a second consumer by the edit: refused', () => {
    const r = edit([gateway, consumer('c'), { ...consumer('d'), text: `kind: Consumer\nname: d\napiKeys: [{ id: d-1, sha256: ${DIGESTS[1]} }]\n` }], [gateway, consumer('c'), consumer('d')]);
    expect(r.answer).toBe(r.checked);
    expect(r.answer).toContain('the same API key is already given to');
  });
});
