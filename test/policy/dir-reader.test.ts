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

  test('a file with content found empty keeps its text for the settle time, on either read; one empty from the start is empty', async () => {
    dir = mkdtempSync(join(tmpdir(), 'flowgate-reader-'));
    writeFileSync(join(dir, 'a.yaml'), 'a: 1\n');
    writeFileSync(join(dir, 'blank.yaml'), '');
    let now = 1_000_000;
    const reader = new PolicyDirReader(dir, 500, () => now);
    const first = await reader.readAll();
    expect(texts(first)).toEqual({ 'a.yaml': 'a: 1\n', 'blank.yaml': '' });
    expect(first.settling).toEqual([]);

    writeFileSync(join(dir, 'a.yaml'), '');
    const caught = await reader.readChanged(['a.yaml']);
    expect(caught?.changed).toBe(false);
    expect(texts(caught)).toEqual({ 'a.yaml': 'a: 1\n', 'blank.yaml': '' });
    expect(caught?.settling).toEqual(['a.yaml']);
    expect(caught?.settleAt).toBe(now + 500);

    // The write lands: read at once, nothing settling.
    now += 100;
    writeFileSync(join(dir, 'a.yaml'), 'a: 2\n');
    const written = await reader.readChanged(['a.yaml']);
    expect(texts(written)['a.yaml']).toBe('a: 2\n');
    expect(written?.settling).toEqual([]);
    expect(written?.settleAt).toBeUndefined();

    // Emptied and left so: the walk keeps the old text until the settle time has passed since it was first seen empty.
    writeFileSync(join(dir, 'a.yaml'), '');
    const start = now;
    expect(texts(await reader.readAll())['a.yaml']).toBe('a: 2\n');
    now = start + 499;
    const still = await reader.readAll();
    expect(texts(still)['a.yaml']).toBe('a: 2\n');
    expect(still.settleAt).toBe(start + 500);
    now = start + 500;
    const settled = await reader.readAll();
    expect(settled.changed).toBe(true);
    expect(texts(settled)['a.yaml']).toBe('');
    expect(settled.settling).toEqual([]);
    // Empty already: a later look at it is no change.
    expect((await reader.readChanged(['a.yaml']))?.changed).toBe(false);
  });
});
