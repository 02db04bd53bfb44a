import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * Builds the Go side of the side-by-side into a cache outside the repository, keyed by a hash of the Go
 * module (go.mod, go.sum, sources) and of the pinned tool versions: a second run with nothing changed
 * builds nothing. Everything comes from the Go module proxy through the go command.
 */

const MODULE_DIR = join(dirname(fileURLToPath(import.meta.url)), 'go');

/**
 * The peers built with `go install PACKAGE@VERSION` (each with its own go.mod). envoyproxy/ratelimit tags
 * no releases since v1.4.0 (2019), so its pin is a pseudo-version: commit 3fb702589d36 of 2026-01-22.
 */
export const GO_TOOLS = {
  ratelimit: { pkg: 'github.com/envoyproxy/ratelimit/src/service_cmd', version: 'v1.4.1-0.20260122083618-3fb702589d36', binary: 'service_cmd' },
  ghz: { pkg: 'github.com/bojand/ghz/cmd/ghz', version: 'v0.120.0', binary: 'ghz' },
} as const;

export interface PeerBinaries {
  readonly dir: string;
  readonly xdsPeer: string;
  readonly adsLoad: string;
  readonly protoset: string;
  readonly ratelimit: string;
  readonly ghz: string;
  readonly goVersion: string;
}

/** The go command: $GO, else go on PATH, else the toolchain at /usr/local/go. */
export function goCommand(): string {
  if (process.env.GO) return process.env.GO;
  try {
    execFileSync('go', ['version'], { stdio: 'ignore' });
    return 'go';
  } catch {
    return '/usr/local/go/bin/go';
  }
}

function sourceHash(): string {
  const hash = createHash('sha256');
  const walk = (dir: string): void => {
    for (const entry of readdirSync(dir, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) walk(path);
      else if (entry.name.endsWith('.go') || entry.name === 'go.mod' || entry.name === 'go.sum') {
        hash.update(relative(MODULE_DIR, path)).update('\0').update(readFileSync(path)).update('\0');
      }
    }
  };
  walk(MODULE_DIR);
  hash.update(JSON.stringify(GO_TOOLS));
  return hash.digest('hex').slice(0, 16);
}

/** Builds (or finds in the cache) every Go binary the side-by-side runs. */
export function buildPeers(log: (line: string) => void): PeerBinaries {
  const go = goCommand();
  const goVersion = execFileSync(go, ['env', 'GOVERSION'], { encoding: 'utf8' }).trim();
  const root = join(process.env.FLOWGATE_CACHE_DIR ?? join(homedir(), '.cache', 'flowgate'), 'peers');
  const dir = join(root, `${goVersion}-${sourceHash()}`);
  const bin = (name: string): string => join(dir, name);
  const binaries: PeerBinaries = {
    dir,
    xdsPeer: bin('xds-peer'),
    adsLoad: bin('ads-load'),
    protoset: bin('rls.protoset'),
    ratelimit: bin(GO_TOOLS.ratelimit.binary),
    ghz: bin(GO_TOOLS.ghz.binary),
    goVersion,
  };
  if (existsSync(join(dir, '.complete'))) return binaries;

  // Built in a scratch directory and renamed into place, so an interrupted build never looks complete.
  const scratch = `${dir}.building-${process.pid}`;
  rmSync(scratch, { recursive: true, force: true });
  mkdirSync(scratch, { recursive: true });
  const env = { ...process.env, GOBIN: scratch, GOFLAGS: '-mod=readonly -buildvcs=false', CGO_ENABLED: '0' };
  const run = (args: string[], cwd: string): void => {
    log(`go ${args.join(' ')}`);
    execFileSync(go, args, { cwd, env, stdio: ['ignore', 'inherit', 'inherit'] });
  };
  run(['build', '-trimpath', '-o', `${scratch}/`, './cmd/...'], MODULE_DIR);
  execFileSync(join(scratch, 'protoset'), ['--out', join(scratch, 'rls.protoset')]);
  for (const tool of Object.values(GO_TOOLS)) run(['install', '-trimpath', `${tool.pkg}@${tool.version}`], scratch);
  writeFileSync(join(scratch, '.complete'), `${new Date().toISOString()}\n`);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(root, { recursive: true });
  renameSync(scratch, dir);
  return binaries;
}
