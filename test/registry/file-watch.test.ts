import { mkdtempSync, renameSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, test } from 'vitest';
import { RegistryFileWatcher } from '../../src/registry/file-watch.js';
import type { RegistrySnapshot } from '../../src/registry/types.js';
import { waitFor } from '../harness/process.js';

/** `serve --registry FILE` re-reads the file when it changes (written in place or replaced by a rename); a broken edit keeps the last snapshot. */

const registry = (champion: string): string => JSON.stringify({ models: [{ name: 'm', aliases: { champion }, versions: [{ version: '1' }, { version: '2' }] }] });

let watcher: RegistryFileWatcher | undefined;
afterEach(() => watcher?.stop());

describe('RegistryFileWatcher', () => {
  test('in-place writes and renames are seen by events (the rescan is a minute); a broken file changes nothing', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'flowgate-registry-watch-'));
    const file = join(dir, 'registry.json');
    writeFileSync(file, registry('1'));
    watcher = new RegistryFileWatcher(file, { rescanMs: 60_000, debounceMs: 20 });
    const seen: RegistrySnapshot[] = [];
    watcher.on('snapshot', (s) => seen.push(s));
    const first = await watcher.start();
    expect(first.models.get('m')?.aliases.champion).toBe('1');
    const champion = (): string | undefined => watcher?.current?.models.get('m')?.aliases.champion;

    writeFileSync(file, registry('2'));
    await waitFor('the in-place write', () => (champion() === '2' ? true : undefined), { timeoutMs: 3000 });
    writeFileSync(join(dir, '.tmp'), registry('1'));
    renameSync(join(dir, '.tmp'), file);
    await waitFor('the rename', () => (champion() === '1' ? true : undefined), { timeoutMs: 3000 });
    expect(seen.map((s) => s.models.get('m')?.aliases.champion)).toEqual(['2', '1']);

    const rejected: string[] = [];
    watcher.on('rejected', (why) => rejected.push(why));
    writeFileSync(file, '{ "models": [ { "name": ');
    await waitFor('the broken file to be read and refused', () => (rejected.length > 0 ? true : undefined), { timeoutMs: 3000 });
    expect(champion()).toBe('1');
    writeFileSync(file, registry('2'));
    await waitFor('the repaired file', () => (champion() === '2' ? true : undefined), { timeoutMs: 3000 });
    expect(seen).toHaveLength(3);
  });
});
