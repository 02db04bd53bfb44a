// Generates TypeScript types for the Envoy protos Flowgate loads (protos/envoy-protos.txt) and Flowgate's
// own protos, with @grpc/proto-loader's generator, into src/generated (not committed: it is derived).
// Skips the work when the inputs have not changed since the last run.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, rmSync, writeFileSync, readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

const root = join(dirname(new URL(import.meta.url).pathname), '..');
const require = createRequire(import.meta.url);
const deps = join(dirname(require.resolve('@grpc/grpc-js-xds/package.json')), 'deps');
const includeDirs = ['envoy-api', 'xds', 'googleapis', 'protoc-gen-validate'].map((d) => join(deps, d));
includeDirs.push(join(root, 'protos'));

const listed = readFileSync(join(root, 'protos/envoy-protos.txt'), 'utf8')
  .split('\n')
  .map((l) => l.trim())
  .filter((l) => l && !l.startsWith('#'));
const own = [];
(function walk(dir, rel) {
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    if (e.isDirectory()) walk(join(dir, e.name), rel ? `${rel}/${e.name}` : e.name);
    else if (e.name.endsWith('.proto')) own.push(rel ? `${rel}/${e.name}` : e.name);
  }
})(join(root, 'protos'), '');
const files = [...listed, ...own];

const outDir = join(root, 'src/generated');
const stamp = join(outDir, '.inputs');
const generatorVersion = JSON.parse(readFileSync(require.resolve('@grpc/proto-loader/package.json'), 'utf8')).version;
const digest = createHash('sha256')
  .update(JSON.stringify({ files, generatorVersion, own: own.map((f) => readFileSync(join(root, 'protos', f), 'utf8')) }))
  .digest('hex');
if (existsSync(stamp) && readFileSync(stamp, 'utf8') === digest) process.exit(0);

rmSync(outDir, { recursive: true, force: true });
const bin = join(dirname(require.resolve('@grpc/proto-loader/package.json')), 'build/bin/proto-loader-gen-types.js');
execFileSync(
  process.execPath,
  [
    bin,
    '--keepCase',
    '--longs=String',
    '--enums=String',
    '--defaults',
    '--oneofs',
    '--json',
    '--grpcLib=@grpc/grpc-js',
    '--importFileExtension=.js',
    `--outDir=${outDir}`,
    ...files,
    '-I',
    ...includeDirs,
  ],
  { stdio: ['ignore', 'ignore', 'inherit'] },
);
writeFileSync(stamp, digest);
