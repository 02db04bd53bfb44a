import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, test } from 'vitest';
import { cliArgs } from '../harness/flowgate.js';
import { repoRoot } from '../harness/venv.js';

/**
 * The CLI's entry point: it lists every command, and imports a command's modules only when that command
 * runs, so `flowgate serve` holds neither the filter service nor a Redis client it does not use
 * (docs/performance-memory.md).
 */

function flowgate(args: string[], nodeArgs: string[] = []): { status: number | null; stdout: string; stderr: string } {
  const [cmd, argv] = cliArgs(args);
  const r = spawnSync(cmd, [...nodeArgs, ...argv], { cwd: repoRoot, encoding: 'utf8', env: { ...process.env, MLFLOW_TRACKING_URI: '' } });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

const COMMANDS = ['serve', 'filters', 'validate', 'render', 'status', 'rollout', 'bootstrap', 'webhooks'];

describe('flowgate', () => {
  test('lists every command with its summary; an unknown one is refused with the list', () => {
    const help = flowgate(['help']);
    expect(help.status).toBe(0);
    for (const name of COMMANDS) expect(help.stdout).toMatch(new RegExp(`^  ${name} +\\S`, 'm'));
    const unknown = flowgate(['serv']);
    expect(unknown.status).toBe(2);
    expect(unknown.stderr).toContain('flowgate: unknown command "serv"');
    expect(unknown.stderr).toMatch(/^ {2}filters +Run the filter service/m);
  });

  test('serve loads the control plane only: no filter-service module, no Redis client', () => {
    const dir = mkdtempSync(join(tmpdir(), 'flowgate-modules-'));
    const list = join(dir, 'loaded.txt');
    writeFileSync(join(dir, 'hooks.mjs'), `import { appendFileSync } from 'node:fs';\nexport async function load(url, context, next) {\n  appendFileSync(${JSON.stringify(list)}, url + '\\n');\n  return next(url, context);\n}\n`);
    writeFileSync(join(dir, 'register.mjs'), `import { register } from 'node:module';\nregister(${JSON.stringify(pathToFileURL(join(dir, 'hooks.mjs')).href)});\n`);
    // --help loads the command's whole static module graph, then exits.
    const r = flowgate(['serve', '--help'], ['--import', join(dir, 'register.mjs')]);
    expect(r.status).toBe(0);
    const loaded = readFileSync(list, 'utf8').split('\n');
    expect(loaded.some((url) => url.endsWith('/src/control/plane.ts'))).toBe(true);
    expect(loaded.filter((url) => url.includes(`${repoRoot}/filters/`))).toEqual([]);
    expect(loaded.filter((url) => url.includes('/node_modules/ioredis/'))).toEqual([]);
  });
});
