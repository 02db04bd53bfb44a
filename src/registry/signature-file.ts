import { readFile } from 'node:fs/promises';
import { parse as parseYaml, stringify } from 'yaml';
import { FlowgateError } from '../errors.js';
import { SignatureFormatError, signatureFromMlmodel } from './mlmodel.js';
import { signatureKey, type SignatureLookup, type SignatureMap } from './signatures.js';
import type { RegistrySnapshot } from './types.js';

/**
 * Signatures written down as a file, for golden tests and `flowgate render`: what the MLmodel files of some
 * versions say, in MLflow's own spelling, without an MLflow.
 *
 *   - { name: fraud-detector, version: 1, signature: { inputs: '[{"type": "double", "name": "amount"}]' } }
 *   - { name: fraud-detector, version: 2, signature: null }      # the MLmodel declares none
 *   - { name: fraud-detector, version: 3, unreadable: "404" }    # MLmodel could not be read
 */

interface Entry {
  name?: unknown;
  version?: unknown;
  signature?: unknown;
  unreadable?: unknown;
}

/** The signature map the entries of `text` describe, keyed to the versions of `registry`. Throws FlowgateError. */
export function signaturesFromText(text: string, file: string, registry: RegistrySnapshot): SignatureMap {
  const doc = parseYaml(text) as unknown;
  if (!Array.isArray(doc)) throw new FlowgateError('registry.signature_file_invalid', 'a signature file is a list of {name, version, signature}', file);
  const map = new Map<string, SignatureLookup>();
  (doc as Entry[]).forEach((e, i) => {
    const at = `${file}[${i}]`;
    const name = typeof e.name === 'string' ? e.name : undefined;
    const version = typeof e.version === 'string' || typeof e.version === 'number' ? String(e.version) : undefined;
    const mv = name === undefined ? undefined : registry.models.get(name)?.versions.find((v) => v.version === version);
    if (!mv) throw new FlowgateError('registry.signature_file_invalid', `${JSON.stringify(name)} version ${String(version)} is not in the registry`, at);
    let lookup: SignatureLookup;
    if (typeof e.unreadable === 'string') lookup = { status: 'unreadable', reason: e.unreadable };
    else {
      try {
        const signature = e.signature === null || e.signature === undefined ? undefined : signatureFromMlmodel(stringify({ signature: e.signature }), at);
        lookup = signature ? { status: 'found', signature } : { status: 'none' };
      } catch (err) {
        if (err instanceof SignatureFormatError) throw new FlowgateError('registry.signature_file_invalid', err.message, at);
        throw err;
      }
    }
    map.set(signatureKey(mv), lookup);
  });
  return map;
}

/** Reads a signature file (YAML or JSON). */
export async function loadSignatureFile(file: string, registry: RegistrySnapshot): Promise<SignatureMap> {
  return signaturesFromText(await readFile(file, 'utf8'), file, registry);
}
