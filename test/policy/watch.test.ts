import { mkdirSync, mkdtempSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, test } from 'vitest';
import type { Policy } from '../../src/policy/policy.js';
import { PolicyWatcher } from '../../src/policy/watch.js';

/**
 * Every kind of edit reaches the watcher through its file-system events, several times in a row: in-place
 * writes, files replaced by a rename (sed -i, editors), and Kubernetes ConfigMap `..data` swaps. The rescan
 * is set to a minute, so an edit applied within the wait below was seen by an event, not by the rescan.
 */

const RESCAN_MS = 60_000;
/** How long an edit may take to apply: the 500 ms bound of the watcher, with slack for a loaded machine. */
const APPLY_WITHIN_MS = 3_000;

const model = (weight: number): string => `kind: Model
name: m
upstream: { addressTemplate: "127.0.0.1:9000" }
traffic:
  stable: { version: "1" }
  canary: { version: "2", weight: ${weight} }
`;

let watcher: PolicyWatcher | undefined;
let dir: string | undefined;
afterEach(async () => {
  await watcher?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** Starts a watcher on `policyDir` and returns a function waiting for the next policy with the given canary weight. */
async function watch(policyDir: string): Promise<(weight: number) => Promise<number>> {
  watcher = new PolicyWatcher(policyDir, { rescanMs: RESCAN_MS, debounceMs: 50 });
  const applied: { weight: number; at: number }[] = [];
  watcher.on('policy', (p: Policy) => applied.push({ weight: p.models.get('m')?.traffic?.canary?.weight ?? -1, at: Date.now() }));
  const first = await watcher.start();
  expect(first.result).toBe('applied');
  return async (weight) => {
    const started = Date.now();
    for (;;) {
      const hit = applied.find((a) => a.weight === weight && a.at >= started - 5);
      if (hit) return hit.at - started;
      if (Date.now() - started > APPLY_WITHIN_MS) throw new Error(`the edit to weight ${weight} was not applied within ${APPLY_WITHIN_MS} ms (applied: ${JSON.stringify(applied.map((a) => a.weight))})`);
      await new Promise((r) => setTimeout(r, 10));
    }
  };
}

describe('PolicyWatcher sees every edit through events', () => {
  test('in-place writes, several in a row', async () => {
    dir = mkdtempSync(join(tmpdir(), 'flowgate-watch-'));
    writeFileSync(join(dir, 'm.yaml'), model(1));
    const applied = await watch(dir);
    for (const weight of [2, 3, 4]) {
      writeFileSync(join(dir, 'm.yaml'), model(weight));
      await applied(weight);
    }
  });

  test('a file replaced by a rename, several times in a row, in a subdirectory too', async () => {
    dir = mkdtempSync(join(tmpdir(), 'flowgate-watch-'));
    mkdirSync(join(dir, 'team'));
    writeFileSync(join(dir, 'team', 'm.yaml'), model(1));
    const applied = await watch(dir);
    for (const weight of [5, 6, 7, 8]) {
      // What sed -i does: write a temporary file beside it, then rename it over the original.
      writeFileSync(join(dir, 'team', '.m.yaml.tmp'), model(weight));
      renameSync(join(dir, 'team', '.m.yaml.tmp'), join(dir, 'team', 'm.yaml'));
      await applied(weight);
    }
  });

  test('a Kubernetes ConfigMap ..data swap, several times in a row', async () => {
    dir = mkdtempSync(join(tmpdir(), 'flowgate-watch-'));
    const root = dir;
    const version = (n: number, weight: number): void => {
      mkdirSync(join(root, `..v${n}`));
      writeFileSync(join(root, `..v${n}`, 'm.yaml'), model(weight));
      symlinkSync(`..v${n}`, join(root, '..data_tmp'));
      renameSync(join(root, '..data_tmp'), join(root, '..data'));
    };
    version(0, 1);
    symlinkSync('..data/m.yaml', join(root, 'm.yaml'));
    const applied = await watch(root);
    for (const [n, weight] of [
      [1, 11],
      [2, 12],
      [3, 13],
    ] as const) {
      version(n, weight);
      await applied(weight);
    }
  });
});

describe('PolicyWatcher reacts to the first change at once and coalesces the rest', () => {
  test('an edit after a quiet period is applied long before the debounce, and a burst ends on its last write', async () => {
    dir = mkdtempSync(join(tmpdir(), 'flowgate-watch-'));
    writeFileSync(join(dir, 'm.yaml'), model(1));
    const debounceMs = 5_000;
    watcher = new PolicyWatcher(dir, { rescanMs: RESCAN_MS, debounceMs, maxDelayMs: 20_000 });
    const applied: number[] = [];
    const reached = (weight: number): Promise<number> =>
      new Promise((resolve) => {
        const started = Date.now();
        const check = (p: Policy): void => {
          if (p.models.get('m')?.traffic?.canary?.weight !== weight) return;
          watcher?.off('policy', check);
          resolve(Date.now() - started);
        };
        watcher?.on('policy', check);
      });
    watcher.on('policy', (p: Policy) => applied.push(p.models.get('m')?.traffic?.canary?.weight ?? -1));
    expect((await watcher.start()).result).toBe('applied');
    const first = reached(2);
    writeFileSync(join(dir, 'm.yaml'), model(2));
    // The old watcher waited debounceMs of quiet; the leading read does not.
    expect(await first).toBeLessThan(debounceMs - 1_000);
    // A burst right after: the writes are coalesced, and the last one is what serves in the end.
    const last = reached(9);
    for (const weight of [3, 4, 5, 9]) writeFileSync(join(dir, 'm.yaml'), model(weight));
    await last;
    expect(applied.at(-1)).toBe(9);
    expect(applied.length).toBeLessThanOrEqual(4);
  }, 30_000);
});

describe('PolicyWatcher reads only the files the events name, and keeps every guarantee', () => {
  const other = (name: string, weight: number): string => model(weight).replace('name: m\n', `name: ${name}\n`);

  test('a file added, then deleted; a bad edit is rejected with file:line and the last good policy keeps serving', async () => {
    dir = mkdtempSync(join(tmpdir(), 'flowgate-watch-'));
    writeFileSync(join(dir, 'm.yaml'), model(1));
    for (let i = 0; i < 50; i++) writeFileSync(join(dir, `other-${i}.yaml`), other(`other-${i}`, 1));
    watcher = new PolicyWatcher(dir, { rescanMs: RESCAN_MS, debounceMs: 50 });
    const next = (accept: (p: Policy) => boolean): Promise<Policy> =>
      new Promise((resolve) => {
        const check = (p: Policy): void => {
          if (!accept(p)) return;
          watcher?.off('policy', check);
          resolve(p);
        };
        watcher?.on('policy', check);
      });
    const rejected = (): Promise<readonly { file: string; line: number }[]> => new Promise((resolve) => watcher?.once('rejected', resolve));
    expect((await watcher.start()).result).toBe('applied');
    expect(watcher.current()?.models.size).toBe(51);

    const added = next((p) => p.models.has('late'));
    writeFileSync(join(dir, 'late.yaml'), other('late', 3));
    expect((await added).models.size).toBe(52);

    const removed = next((p) => !p.models.has('other-7'));
    rmSync(join(dir, 'other-7.yaml'));
    const afterDelete = await removed;
    expect(afterDelete.models.size).toBe(51);
    expect(afterDelete.files).not.toContain('other-7.yaml');

    const refused = rejected();
    writeFileSync(join(dir, 'other-3.yaml'), other('other-3', 1).replace('weight: 1', 'weight: 1\n  wieght: 2'));
    const issues = await refused;
    expect(issues.map((i) => `${i.file}:${i.line}`)).toContain('other-3.yaml:7');
    expect(watcher.current()).toBe(afterDelete);

    // Fixed: the good edit of another file and the fix of the bad one are both read.
    const fixed = next((p) => p.models.get('other-3')?.traffic?.canary?.weight === 4 && p.models.get('m')?.traffic?.canary?.weight === 5);
    writeFileSync(join(dir, 'm.yaml'), model(5));
    writeFileSync(join(dir, 'other-3.yaml'), other('other-3', 4));
    expect((await fixed).models.size).toBe(51);
  });

  test('a new subdirectory with a file in it is walked and watched', async () => {
    dir = mkdtempSync(join(tmpdir(), 'flowgate-watch-'));
    writeFileSync(join(dir, 'm.yaml'), model(1));
    const applied = await watch(dir);
    mkdirSync(join(dir, 'team'));
    writeFileSync(join(dir, 'team', 'n.yaml'), other('n', 1));
    const deadline = Date.now() + APPLY_WITHIN_MS;
    while (!watcher?.current()?.models.has('n')) {
      if (Date.now() > deadline) throw new Error('the file of the new subdirectory was not read');
      await new Promise((r) => setTimeout(r, 10));
    }
    // The new directory is watched: an edit inside it is seen by its event.
    writeFileSync(join(dir, 'team', 'n.yaml'), other('n', 1).replace('weight: 1', 'weight: 9'));
    writeFileSync(join(dir, 'm.yaml'), model(9));
    await applied(9);
    const until = Date.now() + APPLY_WITHIN_MS;
    while (watcher.current()?.models.get('n')?.traffic?.canary?.weight !== 9) {
      if (Date.now() > until) throw new Error('the edit inside the new subdirectory was not read');
      await new Promise((r) => setTimeout(r, 10));
    }
  });

  test('a writer caught between its truncate and its write: the empty file never serves; one left empty does, after the settle time', async () => {
    dir = mkdtempSync(join(tmpdir(), 'flowgate-watch-'));
    writeFileSync(join(dir, 'm.yaml'), model(1));
    writeFileSync(join(dir, 'n.yaml'), other('n', 1));
    const settleMs = 600;
    watcher = new PolicyWatcher(dir, { rescanMs: RESCAN_MS, debounceMs: 50, emptySettleMs: settleMs });
    const seen: { models: string[]; at: number }[] = [];
    watcher.on('policy', (p: Policy) => seen.push({ models: [...p.models.keys()].sort(), at: Date.now() }));
    expect((await watcher.start()).result).toBe('applied');

    // The truncate, then the write 150 ms later: far past the 10 ms grace of the leading read.
    writeFileSync(join(dir, 'm.yaml'), '');
    await new Promise((r) => setTimeout(r, 150));
    writeFileSync(join(dir, 'm.yaml'), model(2));
    const deadline = Date.now() + APPLY_WITHIN_MS;
    while (watcher.current()?.models.get('m')?.traffic?.canary?.weight !== 2) {
      if (Date.now() > deadline) throw new Error(`the write after the truncate was not applied (applied: ${JSON.stringify(seen)})`);
      await new Promise((r) => setTimeout(r, 10));
    }
    // Wait out a settle time: nothing without m was ever applied (the first load, then the write).
    await new Promise((r) => setTimeout(r, settleMs + 100));
    expect(seen.map((s) => s.models)).toEqual([
      ['m', 'n'],
      ['m', 'n'],
    ]);

    // Emptied for good: after the settle time the file declares nothing, and m is gone.
    const emptied = Date.now();
    writeFileSync(join(dir, 'm.yaml'), '');
    const until = Date.now() + settleMs + APPLY_WITHIN_MS;
    while (watcher.current()?.models.has('m')) {
      if (Date.now() > until) throw new Error('the emptied file was never applied');
      await new Promise((r) => setTimeout(r, 10));
    }
    expect(seen.at(-1)?.models).toEqual(['n']);
    expect((seen.at(-1)?.at ?? 0) - emptied).toBeGreaterThanOrEqual(settleMs - 5);
  }, 20_000);
});
