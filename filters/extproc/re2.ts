import { createRequire } from 'node:module';
import type * as Re2Module from 're2-wasm';

/**
 * re2-wasm, loaded on first use: instantiating its WebAssembly module reserves about 17 MB, which every
 * process that imported it paid at start even when no policy has an RE2 pattern (the filter service's rate
 * limiting and authorization never need it). The masking and guardrail patterns take the constructor from
 * here (src/re2.ts is the policy loader's: filters/ does not import src/ beyond the platform helpers).
 */

export type RE2 = Re2Module.RE2;

const require = createRequire(import.meta.url);
let loaded: typeof Re2Module.RE2 | undefined;

/** The RE2 constructor (re2-wasm's), loading the module the first time. */
export function re2(): typeof Re2Module.RE2 {
  return (loaded ??= (require('re2-wasm') as typeof Re2Module).RE2);
}
