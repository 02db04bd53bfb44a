import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, test } from 'vitest';
import { PolicyDirReader } from '../../src/policy/dir-reader.js';

let dir: string | undefined;
afterEach(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const texts = (read: { files: readonly { file: string; text: string }[] } | undefined): Record<string, string> =>
  Object.fromEntries((read?.files ?? []).map((f) => [f.file, f.text]));

describe('PolicyDirReader', () => {
  test('readChanged reads only the named files; readAll catches what no event named', async () => {
    dir = mkdtempSync(join(tmpdir(), 'flowgate-reader-'));
    writeFileSync(join(dir, 'a.yaml'), 'a: 1\n');
    writeFileSync(join(dir, 'b.yaml'), 'b: 1\n');
    const reader = new PolicyDirReader(dir);
    const first = await reader.readAll();
    expect(first.changed).toBe(true);
    expect(texts(first)).toEqual({ 'a.yaml': 'a: 1\n', 'b.yaml': 'b: 1\n' });

    writeFileSync(join(dir, 'a.yaml'), 'a: 2\n');
    writeFileSync(join(dir, 'b.yaml'), 'b: 2\n');
    const named = await reader.readChanged(['a.yaml']);
    expect(named?.changed).toBe(true);
    // b.yaml was not named, so it was not read: its old text is what the reader holds.
    expect(texts(named)).toEqual({ 'a.yaml': 'a: 2\n', 'b.yaml': 'b: 1\n' });

    const all = await reader.readAll();
    expect(all.changed).toBe(true);
    expect(texts(all)).toEqual({ 'a.yaml': 'a: 2\n', 'b.yaml': 'b: 2\n' });
    expect((await reader.readAll()).changed).toBe(false);
  });

  test('a deleted file leaves, a new one joins, dot-files and other names are ignored, a directory asks for a walk', async () => {
    dir = mkdtempSync(join(tmpdir(), 'flowgate-reader-'));
    writeFileSync(join(dir, 'a.yaml'), 'a: 1\n');
    const reader = new PolicyDirReader(dir);
    expect(await reader.readChanged(['a.yaml'])).toBeUndefined(); // no walk yet
    await reader.readAll();
    rmSync(join(dir, 'a.yaml'));
    writeFileSync(join(dir, 'c.yml'), 'c: 1\n');
    writeFileSync(join(dir, '.c.yml.swp'), 'x');
    writeFileSync(join(dir, 'notes.txt'), 'x');
    const read = await reader.readChanged(['a.yaml', 'c.yml', '.c.yml.swp', 'notes.txt', 'gone.yaml']);
    expect(read?.changed).toBe(true);
    expect(texts(read)).toEqual({ 'c.yml': 'c: 1\n' });
    expect((await reader.readChanged(['notes.txt']))?.changed).toBe(false);
    rmSync(join(dir, 'c.yml'));
    const none = await reader.readChanged(['c.yml']);
    expect(none?.files).toEqual([]);
    mkdirSync(join(dir, 'team'));
    expect(await reader.readChanged(['team'])).toBeUndefined();
    expect(await reader.readChanged([''])).toBeUndefined();
  });

  test('an unreadable directory is an issue, and the next read after it comes back reads every file', async () => {
    dir = mkdtempSync(join(tmpdir(), 'flowgate-reader-'));
    const policy = join(dir, 'policy');
    const reader = new PolicyDirReader(policy);
    const missing = await reader.readAll();
    expect(missing.issues.map((i) => i.message)).toEqual([expect.stringMatching(/^cannot read the policy directory: ENOENT/)]);
    expect((await reader.readAll()).changed).toBe(false);
    mkdirSync(policy);
    writeFileSync(join(policy, 'a.yaml'), 'a: 1\n');
    expect(await reader.readChanged(['a.yaml'])).toBeUndefined();
    const back = await reader.readAll();
    expect(back.changed).toBe(true);
    expect(back.issues).toEqual([]);
    expect(texts(back)).toEqual({ 'a.yaml': 'a: 1\n' });
  });
});
