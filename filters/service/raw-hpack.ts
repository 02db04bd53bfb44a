import { createRequire } from 'node:module';

/**
 * HPACK (RFC 7541) for the raw HTTP/2 front end (raw-transport.ts): a decoder for request header blocks,
 * with the dynamic table the peer's encoder fills, and an encoder of literal fields that never touches a
 * table (so nothing on our side has dynamic-table state for the answers).
 *
 * Why not hpack.js's Decompressor: it is a readable-stream Duplex fed through an OffsetBuffer, decodes
 * Huffman strings into arrays of numbers joined afterwards, and hands fields out as objects pushed through
 * the stream, several allocations and callbacks per field for the few fields of a Check call's block. Only
 * its data is used here: the static table and the Huffman code table (hpack.js 2.1.6), from which the
 * decoding tree below is built once.
 */

const require = createRequire(import.meta.url);
const STATIC_TABLE = (require('hpack.js/lib/hpack/static-table.js') as { table: readonly { name: string; value: string }[] }).table;
/** Per symbol 0..256 (256: EOS): [bit length, code]. */
const HUFFMAN_CODES = (require('hpack.js/lib/hpack/huffman.js') as { encode: readonly (readonly [number, number])[] }).encode;

/** A malformed header block: a COMPRESSION_ERROR for the whole connection (RFC 7541 §2.3.2 / RFC 9113 §4.3). */
export class HpackError extends Error {}

/**
 * The Huffman decoding tree, in one Int32Array: node n's children at [2n] (bit 0) and [2n + 1] (bit 1);
 * a child > 0 is a node, a child < 0 is the symbol -(child + 1), 0 is no code (cannot happen for a complete code).
 */
const HUFFMAN_TREE = ((): Int32Array => {
  const tree = new Int32Array(2 * 512);
  let nodes = 1;
  HUFFMAN_CODES.forEach(([bits, code], symbol) => {
    let node = 0;
    for (let i = bits - 1; i >= 0; i--) {
      const slot = 2 * node + ((code >>> i) & 1);
      if (i === 0) tree[slot] = -(symbol + 1);
      else {
        if (tree[slot] === 0) tree[slot] = nodes++;
        node = tree[slot] as number;
      }
    }
  });
  return tree;
})();

/** Decodes a Huffman-coded string (latin1: header bytes as they are). */
export function huffmanDecode(buf: Buffer, start: number, end: number): string {
  let out = '';
  let node = 0;
  // Bits walked since the last symbol, all ones so far (valid padding is at most 7 one bits: §5.2).
  let depth = 0;
  let ones = true;
  for (let i = start; i < end; i++) {
    const byte = buf[i] as number;
    for (let b = 7; b >= 0; b--) {
      const bit = (byte >>> b) & 1;
      const next = HUFFMAN_TREE[2 * node + bit] as number;
      if (next < 0) {
        const symbol = -next - 1;
        if (symbol === 256) throw new HpackError('EOS in a Huffman string');
        out += String.fromCharCode(symbol);
        node = 0;
        depth = 0;
        ones = true;
      } else {
        node = next;
        depth++;
        if (bit === 0) ones = false;
      }
    }
  }
  if (depth > 7 || !ones) throw new HpackError('bad Huffman padding');
  return out;
}

interface Entry {
  readonly name: string;
  readonly value: string;
  readonly size: number;
}

/** Receives each decoded field of a block, in order. */
export type FieldSink = (name: string, value: string) => void;

/** The header-block decoder of one connection (its dynamic table lives as long as the connection). */
export class HpackDecoder {
  /** Newest entry last. */
  private readonly dynamic: Entry[] = [];
  private size = 0;
  private maxSize: number;
  private pos = 0;
  private buf: Buffer = Buffer.alloc(0);
  private end = 0;

  /** settingsMaxSize: our SETTINGS_HEADER_TABLE_SIZE (the most the encoder may size the table to). */
  constructor(private readonly settingsMaxSize = 4096) {
    this.maxSize = settingsMaxSize;
  }

  /**
   * Decodes one whole header block (HEADERS + CONTINUATION payloads joined), handing each field to sink;
   * returns the header list size (RFC 9113 §6.5.2: names, values and 32 per field). Throws HpackError.
   */
  decode(block: Buffer, start: number, end: number, sink: FieldSink): number {
    this.buf = block;
    this.pos = start;
    this.end = end;
    let listSize = 0;
    let fields = 0;
    while (this.pos < this.end) {
      const byte = block[this.pos] as number;
      let name: string;
      let value: string;
      if (byte & 0x80) {
        // Indexed field.
        const entry = this.entry(this.integer(7));
        name = entry.name;
        value = entry.value;
      } else if (byte & 0x40) {
        // Literal with incremental indexing.
        const index = this.integer(6);
        name = index === 0 ? this.string() : this.entry(index).name;
        value = this.string();
        this.add(name, value);
      } else if (byte & 0x20) {
        // Dynamic table size update: only before the first field (§4.2).
        if (fields > 0) throw new HpackError('table size update after a field');
        const size = this.integer(5);
        if (size > this.settingsMaxSize) throw new HpackError('table size update past SETTINGS_HEADER_TABLE_SIZE');
        this.maxSize = size;
        this.evict();
        continue;
      } else {
        // Literal without indexing (0000) or never indexed (0001).
        const index = this.integer(4);
        name = index === 0 ? this.string() : this.entry(index).name;
        value = this.string();
      }
      fields++;
      listSize += name.length + value.length + 32;
      sink(name, value);
    }
    this.buf = EMPTY;
    return listSize;
  }

  /** An integer with an N-bit prefix (§5.1), at most 2^28 (more is no sane header block). */
  private integer(prefixBits: number): number {
    if (this.pos >= this.end) throw new HpackError('truncated integer');
    const max = (1 << prefixBits) - 1;
    let value = (this.buf[this.pos++] as number) & max;
    if (value < max) return value;
    let shift = 0;
    for (;;) {
      if (this.pos >= this.end) throw new HpackError('truncated integer');
      const byte = this.buf[this.pos++] as number;
      value += (byte & 0x7f) * 2 ** shift;
      if ((byte & 0x80) === 0) break;
      shift += 7;
      if (shift > 21) throw new HpackError('integer too large');
    }
    return value;
  }

  private string(): string {
    if (this.pos >= this.end) throw new HpackError('truncated string');
    const huffman = ((this.buf[this.pos] as number) & 0x80) !== 0;
    const length = this.integer(7);
    const start = this.pos;
    if (length > this.end - start) throw new HpackError('string past the block');
    this.pos = start + length;
    return huffman ? huffmanDecode(this.buf, start, start + length) : this.buf.toString('latin1', start, start + length);
  }

  private entry(index: number): { name: string; value: string } {
    if (index === 0) throw new HpackError('index 0');
    if (index <= STATIC_TABLE.length) return STATIC_TABLE[index - 1] as Entry;
    const entry = this.dynamic[this.dynamic.length - 1 - (index - STATIC_TABLE.length - 1)];
    if (entry === undefined) throw new HpackError(`index ${index} past the tables`);
    return entry;
  }

  private add(name: string, value: string): void {
    const size = name.length + value.length + 32;
    this.dynamic.push({ name, value, size });
    this.size += size;
    this.evict();
  }

  private evict(): void {
    while (this.size > this.maxSize) this.size -= (this.dynamic.shift() as Entry).size;
  }
}

const EMPTY = Buffer.alloc(0);

/** An HPACK integer with an N-bit prefix whose high bits are `flags`. */
function encodeInteger(out: number[], flags: number, prefixBits: number, value: number): void {
  const max = (1 << prefixBits) - 1;
  if (value < max) {
    out.push(flags | value);
    return;
  }
  out.push(flags | max);
  let rest = value - max;
  while (rest >= 0x80) {
    out.push((rest & 0x7f) | 0x80);
    rest >>>= 7;
  }
  out.push(rest);
}

/** Static-table indexes of the names and fields the answers use. */
export const STATIC = { status200: 8, status: 8, contentType: 31 } as const;

/**
 * A header block of literal fields without indexing (§6.2.2), raw strings (latin1): `name` a static-table
 * index or a new name. `:status 200` can be given as the indexed field [STATIC.status200] alone.
 */
export function encodeBlock(fields: readonly (readonly [number | string, string] | readonly [typeof STATIC.status200])[]): Buffer {
  const out: number[] = [];
  const text = (s: string): void => {
    const bytes = Buffer.from(s, 'latin1');
    encodeInteger(out, 0, 7, bytes.length);
    for (const b of bytes) out.push(b);
  };
  for (const field of fields) {
    if (field.length === 1) {
      encodeInteger(out, 0x80, 7, field[0]);
      continue;
    }
    const [name, value] = field;
    if (typeof name === 'number') encodeInteger(out, 0, 4, name);
    else {
      out.push(0);
      text(name);
    }
    text(value);
  }
  return Buffer.from(out);
}
