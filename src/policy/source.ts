import { isAlias, isMap, isPair, isScalar, isSeq, LineCounter, parseAllDocuments, type Document, type Node as YamlNode } from 'yaml';
import { pathText, type PolicyIssue, type PolicyPath } from './issues.js';

/**
 * One YAML document of a policy file: its plain value, and an index from every path inside it to where its
 * key and value were written, so any later stage can place an issue on the exact line and column.
 */

export interface SourcePosition {
  /** Relative to the policy directory, '/'-separated. */
  readonly file: string;
  readonly line: number;
  readonly col: number;
}

interface NodePlace {
  readonly key?: { line: number; col: number };
  readonly value?: { line: number; col: number };
}

/** Which end of a `key: value` pair an issue is about. */
export type PlaceOf = 'key' | 'value';

export class SourceDocument {
  constructor(
    readonly file: string,
    /** 0-based position of the document in its file. */
    readonly index: number,
    /** The document as plain data (YAML anchors and merge keys resolved). */
    readonly value: unknown,
    private readonly places: ReadonlyMap<string, NodePlace>,
  ) {}

  /**
   * Where `path` was written: its value (or key) when present; for a path that is not in the file (a missing
   * required key), the key of the nearest mapping that holds it, which is where the missing key belongs.
   */
  locate(path: PolicyPath, prefer: PlaceOf = 'value'): SourcePosition {
    for (let n = path.length; n >= 0; n--) {
      const place = this.places.get(placeKey(path.slice(0, n)));
      if (!place) continue;
      const full = n === path.length;
      const pos = full && prefer === 'value' ? (place.value ?? place.key) : (place.key ?? place.value);
      if (pos) return { file: this.file, ...pos };
    }
    return { file: this.file, line: 1, col: 1 };
  }

  /** A PolicyIssue placed at `path`. */
  issue(path: PolicyPath, message: string, code: PolicyIssue['code'], prefer: PlaceOf = 'value'): PolicyIssue {
    const at = this.locate(path, prefer);
    return { file: at.file, line: at.line, col: at.col, path: pathText(path), message, code };
  }
}

function placeKey(path: PolicyPath): string {
  return JSON.stringify(path);
}

/** The file's YAML documents (empty ones dropped) and its YAML syntax issues. */
export interface ParsedFile {
  readonly documents: readonly SourceDocument[];
  readonly issues: readonly PolicyIssue[];
}

// Deeper than any policy document; stops alias loops (`a: &x { b: *x }`) from walking forever.
const MAX_DEPTH = 32;

/** Parses one policy file; documents with YAML errors are reported and left out, the others are kept. */
export function parsePolicyFile(file: string, text: string): ParsedFile {
  const lineCounter = new LineCounter();
  const docs = parseAllDocuments(text, { lineCounter, prettyErrors: false, merge: true, uniqueKeys: true });
  const issues: PolicyIssue[] = [];
  const documents: SourceDocument[] = [];
  const at = (offset: number): { line: number; col: number } => lineCounter.linePos(offset);
  const yamlIssue = (offset: number, message: string): PolicyIssue => ({ file, ...at(offset), path: '', message, code: 'yaml' });

  docs.forEach((doc, index) => {
    const problems = [...doc.errors, ...doc.warnings];
    for (const p of problems) issues.push(yamlIssue(p.pos[0], yamlMessage(p.message)));
    if (problems.length > 0) return;
    if (doc.contents === null || (isScalar(doc.contents) && doc.contents.value === null)) return;
    let value: unknown;
    try {
      value = doc.toJS({ maxAliasCount: 100 });
    } catch (err) {
      issues.push(yamlIssue(doc.contents.range?.[0] ?? 0, yamlMessage(err instanceof Error ? err.message : String(err))));
      return;
    }
    const places = new Map<string, NodePlace>();
    const start = doc.contents.range?.[0];
    if (start !== undefined) places.set(placeKey([]), { value: at(start) });
    indexNode(doc, doc.contents, [], places, at, 0);
    documents.push(new SourceDocument(file, index, value, places));
  });
  return { documents, issues };
}

/** yaml's messages sometimes end with a source excerpt after a newline; the position already says where. */
function yamlMessage(message: string): string {
  const first = message.split('\n')[0] ?? message;
  return `YAML: ${first.replace(/ at line \d+, column \d+:?$/, '')}`;
}

function nodeStart(node: unknown, at: (offset: number) => { line: number; col: number }): { line: number; col: number } | undefined {
  if (!node || typeof node !== 'object') return undefined;
  // An empty value (`timeout:` with nothing after it) is a null scalar of zero width: point at its key instead.
  if (isScalar(node) && node.value === null && node.range && node.range[0] === node.range[1]) return undefined;
  const range = (node as { range?: [number, number, number] | null }).range;
  return range ? at(range[0]) : undefined;
}

function indexNode(
  doc: Document,
  node: unknown,
  path: PolicyPath,
  places: Map<string, NodePlace>,
  at: (offset: number) => { line: number; col: number },
  depth: number,
): void {
  if (depth > MAX_DEPTH) return;
  const target = isAlias(node) ? node.resolve(doc) : node;
  if (isMap(target)) {
    const merges: YamlNode[] = [];
    for (const pair of target.items) {
      if (!isPair(pair)) continue;
      const keyNode = pair.key;
      if (isScalar(keyNode) && keyNode.value === '<<' && pair.value) {
        merges.push(pair.value as YamlNode);
        continue;
      }
      if (!isScalar(keyNode)) continue;
      const childPath = [...path, String(keyNode.value)];
      places.set(placeKey(childPath), { key: nodeStart(keyNode, at), value: nodeStart(pair.value, at) });
      indexNode(doc, pair.value, childPath, places, at, depth + 1);
    }
    // Keys written in the mapping win over merged ones, as in toJS; merged keys point at where they were written.
    for (const merged of merges) {
      const sources = isSeq(merged) ? merged.items : [merged];
      for (const source of sources) {
        const resolved = isAlias(source) ? source.resolve(doc) : source;
        if (!isMap(resolved)) continue;
        for (const pair of resolved.items) {
          if (!isPair(pair) || !isScalar(pair.key)) continue;
          const childPath = [...path, String(pair.key.value)];
          if (places.has(placeKey(childPath))) continue;
          places.set(placeKey(childPath), { key: nodeStart(pair.key, at), value: nodeStart(pair.value, at) });
          indexNode(doc, pair.value, childPath, places, at, depth + 1);
        }
      }
    }
  } else if (isSeq(target)) {
    target.items.forEach((item, i) => {
      const childPath = [...path, i];
      places.set(placeKey(childPath), { value: nodeStart(item, at) });
      indexNode(doc, item, childPath, places, at, depth + 1);
    });
  }
}
