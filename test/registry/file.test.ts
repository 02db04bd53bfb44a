import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { FlowgateError } from '../../src/errors.js';
import { RegistryFileError, loadRegistryFile, registryFromText, saveRegistryFile } from '../../src/registry/file.js';
import { registrySnapshotFrom } from '../../src/registry/snapshot.js';
import { repoRoot } from '../harness/venv.js';

/** The issues a text is rejected with, as `line:col path: message` strings. */
function rejection(text: string): string[] {
  try {
    registryFromText(text, 'registry.json');
  } catch (err) {
    if (!(err instanceof RegistryFileError)) throw err;
    expect(err.code).toBe('registry.file_invalid');
    return err.issues.map((i) => `${i.line}:${i.col} ${i.path}: ${i.message}`);
  }
  throw new Error('the text was accepted');
}

describe('registry file', () => {
  it('loads the quickstart registry', async () => {
    const snapshot = await loadRegistryFile(join(repoRoot, 'examples', 'quickstart', 'registry.json'));
    expect([...snapshot.models.keys()]).toEqual(['fraud-detector', 'support-bot']);
    expect(snapshot.models.get('support-bot')?.versions.map((v) => [v.version, v.tags['flowgate.address']])).toEqual([['1', '127.0.0.1:8003']]);
    const model = snapshot.models.get('fraud-detector');
    expect(model?.aliases).toEqual({ challenger: '2', champion: '1' });
    expect(model?.versions.map((v) => [v.version, v.status, v.stage, v.aliases, v.tags['flowgate.address']])).toEqual([
      ['1', 'READY', 'Production', ['champion'], '127.0.0.1:8001'],
      ['2', 'READY', 'Staging', ['challenger'], '127.0.0.1:8002'],
    ]);
    expect(snapshot.hash).toMatch(/^[0-9a-f]{64}$/);
    expect(snapshot.fetchedAt).toBeGreaterThan(0);
  });

  it('fills defaults and derives version aliases from the model alias map', () => {
    const snapshot = registryFromText(
      JSON.stringify({ models: [{ name: 'm', aliases: { champion: 10, shadow: '2' }, versions: [{ version: 10 }, { version: '2' }, { version: '1' }] }] }),
      'registry.json',
    );
    const model = snapshot.models.get('m');
    expect(model?.description).toBe('');
    expect(model?.tags).toEqual({});
    // Numeric order, not text order: 10 comes last.
    expect(model?.versions.map((v) => v.version)).toEqual(['1', '2', '10']);
    expect(model?.versions.map((v) => [v.status, v.stage, v.source, v.runId, v.aliases])).toEqual([
      ['READY', 'None', '', '', []],
      ['READY', 'None', '', '', ['shadow']],
      ['READY', 'None', '', '', ['champion']],
    ]);
    expect(model?.versions.every((v) => v.name === 'm')).toBe(true);
  });

  it('takes aliases written on versions into the model map', () => {
    const snapshot = registryFromText(
      JSON.stringify({ models: [{ name: 'm', aliases: { champion: '1' }, versions: [{ version: '1', aliases: ['champion', 'stable'] }, { version: '2', aliases: ['challenger'] }] }] }),
      'r.json',
    );
    expect(snapshot.models.get('m')?.aliases).toEqual({ challenger: '2', champion: '1', stable: '1' });
    expect(snapshot.models.get('m')?.versions.map((v) => v.aliases)).toEqual([['champion', 'stable'], ['challenger']]);
  });

  it('reads YAML too', () => {
    const snapshot = registryFromText(
      ['models:', '  - name: churn', '    aliases: { champion: "3" }', '    versions:', '      - version: "3"', '        tags: { flowgate.address: "10.0.0.1:8080" }'].join('\n'),
      'registry.yaml',
    );
    expect(snapshot.models.get('churn')?.versions[0]?.tags).toEqual({ 'flowgate.address': '10.0.0.1:8080' });
    expect(snapshot.models.get('churn')?.versions[0]?.aliases).toEqual(['champion']);
  });

  it('hashes content, not its order or the fetch time', () => {
    const a = registryFromText(
      JSON.stringify({
        models: [
          { name: 'a', aliases: { x: '1', y: '2' }, versions: [{ version: '1', tags: { p: '1', q: '2' } }, { version: '2' }] },
          { name: 'b', versions: [] },
        ],
      }),
      'a.json',
      1,
    );
    const b = registryFromText(
      JSON.stringify({
        models: [
          { name: 'b' },
          { versions: [{ version: '2' }, { tags: { q: '2', p: '1' }, version: '1' }], aliases: { y: '2', x: '1' }, name: 'a' },
        ],
      }),
      'b.json',
      2,
    );
    expect(b.hash).toBe(a.hash);
    const c = registryFromText(JSON.stringify({ models: [{ name: 'a', aliases: { x: '2', y: '2' }, versions: [{ version: '1', tags: { p: '1', q: '2' } }, { version: '2' }] }, { name: 'b' }] }), 'c.json');
    expect(c.hash).not.toBe(a.hash);
    // The same content built in code, as the MLflow client does, hashes the same as the file.
    expect(registrySnapshotFrom([...a.models.values()], 3).hash).toBe(a.hash);
  });

  it('freezes the snapshot', () => {
    const snapshot = registryFromText(JSON.stringify({ models: [{ name: 'm', versions: [{ version: '1' }] }] }), 'r.json');
    const version = snapshot.models.get('m')?.versions[0];
    expect(Object.isFrozen(version)).toBe(true);
    expect(Object.isFrozen(version?.tags)).toBe(true);
    expect(Object.isFrozen(snapshot.models.get('m')?.versions)).toBe(true);
  });

  it('places schema errors on the line and column to edit', () => {
    const text = [
      '{',
      '  "models": [',
      '    {',
      '      "name": "m",',
      '      "versions": [',
      '        { "version": "1", "staus": "READY" },',
      '        { "version": "2", "status": "LIVE", "tags": { "a": 1 } }',
      '      ]',
      '    }',
      '  ]',
      '}',
    ].join('\n');
    expect(rejection(text)).toEqual([
      "6:27 models[0].versions[0].staus: unknown key 'staus'",
      '7:37 models[0].versions[1].status: must be one of READY, PENDING_REGISTRATION, FAILED_REGISTRATION (got "LIVE")',
      '7:60 models[0].versions[1].tags.a: must be a string (got 1)',
    ]);
  });

  it('rejects bad version numbers, a missing name and a missing models list', () => {
    expect(rejection('{"models": [{"versions": [{"version": "v1"}]}]}')).toEqual([
      '1:13 models[0].name: is required',
      '1:39 models[0].versions[0].version: must be a version number like "1" or "12"',
    ]);
    expect(rejection('{"model": []}')).toEqual(['1:1 models: is required', "1:2 model: unknown key 'model'"]);
    expect(rejection('')).toEqual(['1:1 : must be a mapping (got an empty value)']);
  });

  it('rejects aliases that point nowhere or contradict each other, and duplicates', () => {
    const text = JSON.stringify(
      {
        models: [
          { name: 'm', aliases: { champion: '3' }, versions: [{ version: '1' }, { version: '1' }] },
          { name: 'm', aliases: { champion: '1' }, versions: [{ version: '1' }, { version: '2', aliases: ['champion'] }] },
        ],
      },
      null,
      2,
    );
    const issues = rejection(text);
    expect(issues).toHaveLength(4);
    expect(issues[0]).toMatch(/^\d+:\d+ models\[0\]\.versions\[1\]\.version: version 1 of "m" is listed twice$/);
    expect(issues[1]).toMatch(/^\d+:\d+ models\[0\]\.aliases\.champion: alias 'champion' points at version 3, which "m" does not list under versions$/);
    expect(issues[2]).toMatch(/^\d+:\d+ models\[1\]\.name: model "m" is listed twice$/);
    expect(issues[3]).toMatch(/^\d+:\d+ models\[1\]\.versions\[1\]\.aliases\[0\]: alias 'champion' is on version 2 here but on version 1 elsewhere in "m"$/);
    // Each on the value to edit in the pretty-printed text: the second "version": "1", the alias target, ...
    expect(issues.map((i) => i.split(' ')[0])).toEqual(['13:22', '6:21', '18:15', '29:13']);
  });

  it('reports syntax errors with their line', () => {
    expect(rejection('{\n  "models": [\n    { "name": "m" "x" }\n  ]\n}')).toEqual(['3:19 : Unexpected double-quoted-scalar at node end']);
    expect(rejection('{"models": [{"name": "m", "name": "n"}]}')).toEqual(['1:27 : Map keys must be unique']);
  });

  it('says which file and where in the message', () => {
    try {
      registryFromText('{"models": [{"name": "m", "versions": [{"version": "1", "stage": "Stagin"}]}]}', 'reg.json');
      expect.unreachable();
    } catch (err) {
      expect(String(err)).toBe('reg.json:1:66: models[0].versions[0].stage: must be one of None, Staging, Production, Archived (got "Stagin") (did you mean \'Staging\'?)');
    }
  });

  it('fails readably on a file that is not there', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'flowgate-registry-file-'));
    const missing = join(dir, 'nope.json');
    await expect(loadRegistryFile(missing)).rejects.toSatisfy((err) => err instanceof FlowgateError && err.code === 'registry.file_unreadable' && err.where === missing);
    const bad = join(dir, 'bad.json');
    writeFileSync(bad, '{"models": 3}');
    await expect(loadRegistryFile(bad)).rejects.toThrow(`${bad}:1:12: models: must be a list (got 3)`);
  });
});

describe('registry cache file', () => {
  it('a saved snapshot reads back with the same content hash (aliases, stages, statuses, tags)', async () => {
    const original = await loadRegistryFile(join(repoRoot, 'examples', 'quickstart', 'registry.json'));
    const withPending = registryFromText(
      JSON.stringify({ models: [{ name: 'm', aliases: { a: '2' }, versions: [{ version: 1, status: 'FAILED_REGISTRATION', stage: 'Archived' }, { version: 2, tags: { k: 'v' } }] }] }),
      'inline.json',
    );
    const dir = mkdtempSync(join(tmpdir(), 'flowgate-registry-cache-'));
    for (const snapshot of [original, withPending]) {
      const file = join(dir, 'cache.json');
      await saveRegistryFile(file, snapshot);
      const back = await loadRegistryFile(file);
      expect(back.hash).toBe(snapshot.hash);
      expect([...back.models.keys()]).toEqual([...snapshot.models.keys()]);
    }
  });
});
