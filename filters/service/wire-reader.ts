/**
 * The protobuf wire reading the partial decoders share (check-decode.ts, ratelimit-decode.ts): varints of at
 * most 32 bits, length-delimited fields bounded by their message, strings as protobufjs reads them, and
 * fields skipped by wire type. Anything a partial decoder should not judge itself throws UNUSUAL.
 */

/** Thrown inside a partial decoder: the message goes to the full decoder instead. */
export const UNUSUAL = new Error('unusual message');

const LEN = 2;

/**
 * Buffer's own UTF-8 slice, as protobufjs reads strings; `toString('utf8', ...)` is the same decoding behind an
 * encoding switch (a tenth of this decoder's time), and the fallback should a Node lack the method.
 */
const utf8Slice = (Buffer.prototype as unknown as { utf8Slice?: (this: Buffer, start: number, end: number) => string }).utf8Slice;
const utf8: (buf: Buffer, start: number, end: number) => string = utf8Slice
  ? (buf, start, end) => utf8Slice.call(buf, start, end)
  : (buf, start, end) => buf.toString('utf8', start, end);

export class Reader {
  pos = 0;
  constructor(readonly buf: Buffer) {}

  /** A varint of at most 32 bits (tags, lengths); longer ones are unusual here. */
  uint32(): number {
    const buf = this.buf;
    let value = 0;
    for (let shift = 0; shift < 35; shift += 7) {
      if (this.pos >= buf.length) throw UNUSUAL;
      const byte = buf[this.pos++] as number;
      value += (byte & 0x7f) * 2 ** shift;
      if (byte < 0x80) {
        if (value > 0x7fffffff) throw UNUSUAL;
        return value;
      }
    }
    throw UNUSUAL;
  }

  /** A field's tag; field number 0 does not exist. */
  tag(): number {
    const tag = this.uint32();
    if (tag >>> 3 === 0) throw UNUSUAL;
    return tag;
  }

  /** The end of a length-delimited field that starts here, inside `end`. */
  delimited(end: number): number {
    const length = this.uint32();
    const stop = this.pos + length;
    if (stop > end) throw UNUSUAL;
    return stop;
  }

  string(end: number): string {
    const stop = this.delimited(end);
    const value = utf8(this.buf, this.pos, stop);
    this.pos = stop;
    return value;
  }

  /** Skips a field this decoder does not read. */
  skip(wireType: number, end: number): void {
    switch (wireType) {
      case 0:
        for (let i = 0; ; i++) {
          if (i >= 10 || this.pos >= end) throw UNUSUAL;
          if ((this.buf[this.pos++] as number) < 0x80) return;
        }
      case 1:
        this.pos += 8;
        break;
      case LEN:
        this.pos = this.delimited(end);
        break;
      case 5:
        this.pos += 4;
        break;
      default:
        throw UNUSUAL;
    }
    if (this.pos > end) throw UNUSUAL;
  }

  /** One map<string, string> entry into `into`. */
  entry(end: number, into: Record<string, string>): void {
    const stop = this.delimited(end);
    let key = '';
    let value = '';
    while (this.pos < stop) {
      const tag = this.tag();
      const field = tag >>> 3;
      if ((field === 1 || field === 2) && (tag & 7) !== LEN) throw UNUSUAL;
      if (field === 1) key = this.string(stop);
      else if (field === 2) value = this.string(stop);
      else this.skip(tag & 7, stop);
    }
    into[key] = value;
  }
}

/** Whether a field's tag says length-delimited (strings, messages, map entries). */
export function lengthDelimited(tag: number): boolean {
  return (tag & 7) === LEN;
}
