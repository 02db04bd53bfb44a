import { brotliCompressSync, deflateSync, gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { BodyDecoder, DecodeError, parseContentEncoding, type ContentCoding } from '../../../filters/extproc/content-coding.js';

const encoders: Record<ContentCoding, (b: Buffer) => Buffer> = { gzip: gzipSync, deflate: deflateSync, br: brotliCompressSync };
const text = Buffer.from(JSON.stringify({ messages: Array.from({ length: 200 }, (_, i) => ({ role: 'user', content: `message ${i} for jane@example.com` })) }));

/** Feeds `bytes` in chunks cut at `cuts` and answers everything decoded. */
async function decodeInChunks(decoder: BodyDecoder, bytes: Buffer, cuts: number[]): Promise<Buffer> {
  const out: Buffer[] = [];
  let from = 0;
  for (const cut of [...cuts, bytes.length]) {
    out.push(await decoder.push(bytes.subarray(from, cut), cut === bytes.length));
    from = cut;
  }
  return Buffer.concat(out);
}

describe('parseContentEncoding', () => {
  it('lists the codings in the order applied, without identity, case-insensitively', () => {
    expect(parseContentEncoding(undefined)).toEqual({ ok: true, codings: [] });
    expect(parseContentEncoding('identity')).toEqual({ ok: true, codings: [] });
    expect(parseContentEncoding('GZIP')).toEqual({ ok: true, codings: ['gzip'] });
    expect(parseContentEncoding('x-gzip')).toEqual({ ok: true, codings: ['gzip'] });
    expect(parseContentEncoding('deflate, br')).toEqual({ ok: true, codings: ['deflate', 'br'] });
  });

  it('names the first coding it cannot undo, and refuses stacks deeper than two', () => {
    expect(parseContentEncoding('zstd')).toEqual({ ok: false, coding: 'zstd' });
    expect(parseContentEncoding('gzip, compress')).toEqual({ ok: false, coding: 'compress' });
    expect(parseContentEncoding('gzip, gzip, gzip')).toMatchObject({ ok: false });
  });
});

describe('BodyDecoder', () => {
  it.each(['gzip', 'deflate', 'br'] as const)('undoes %s whole and in chunks cut anywhere', async (coding) => {
    const encoded = encoders[coding](text);
    expect((await new BodyDecoder([coding], 1 << 20).push(encoded, true)).equals(text)).toBe(true);
    const cuts = [1, 2, 7, Math.floor(encoded.length / 3), Math.floor(encoded.length / 2), encoded.length - 1];
    expect((await decodeInChunks(new BodyDecoder([coding], 1 << 20), encoded, cuts)).equals(text)).toBe(true);
  });

  it('gives back each chunk of a flushed stream as it arrives, before the stream ends', async () => {
    const decoder = new BodyDecoder(['gzip'], 1 << 20);
    const { createGzip, constants } = await import('node:zlib');
    const gzip = createGzip({ flush: constants.Z_SYNC_FLUSH });
    const pieces: Buffer[] = [];
    gzip.on('data', (b: Buffer) => pieces.push(b));
    const event = async (s: string): Promise<Buffer> => {
      const before = pieces.length;
      gzip.write(s);
      await new Promise<void>((r) => gzip.flush(() => r()));
      return decoder.push(Buffer.concat(pieces.slice(before)), false);
    };
    expect((await event('data: one\n\n')).toString()).toBe('data: one\n\n');
    expect((await event('data: two\n\n')).toString()).toBe('data: two\n\n');
  });

  it('undoes stacked codings last-applied first', async () => {
    const encoded = brotliCompressSync(gzipSync(text));
    expect((await new BodyDecoder(['gzip', 'br'], 1 << 20).push(encoded, true)).equals(text)).toBe(true);
  });

  it('stops a bomb at the cap instead of inflating it whole', async () => {
    const bomb = gzipSync(Buffer.alloc(50 * 1024 * 1024, 0x20));
    expect(bomb.length).toBeLessThan(100_000);
    const decoder = new BodyDecoder(['gzip'], 64 * 1024);
    const err = await decoder.push(bomb, true).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DecodeError);
    expect(err).toMatchObject({ reason: 'too_large' });
    expect(decoder.decodedBytes).toBeLessThan(64 * 1024 + 64 * 1024);
    // And it stays failed.
    await expect(decoder.push(Buffer.alloc(1), true)).rejects.toMatchObject({ reason: 'too_large' });
  });

  it('caps the inner coding of a stack too', async () => {
    const inner = gzipSync(Buffer.alloc(20 * 1024 * 1024, 0x61));
    const err = await new BodyDecoder(['gzip', 'gzip'], 64 * 1024).push(gzipSync(inner), true).catch((e: unknown) => e);
    expect(err).toMatchObject({ reason: 'too_large' });
  });

  it('fails on bytes that are not in the coding, and on a truncated body', async () => {
    await expect(new BodyDecoder(['gzip'], 1 << 20).push(Buffer.from('not gzip at all'), true)).rejects.toMatchObject({ reason: 'corrupt' });
    const encoded = gzipSync(text);
    await expect(new BodyDecoder(['gzip'], 1 << 20).push(encoded.subarray(0, encoded.length - 10), true)).rejects.toMatchObject({ reason: 'corrupt' });
  });

  it('treats an empty body as nothing to decode', async () => {
    expect((await new BodyDecoder(['br'], 10).push(Buffer.alloc(0), true)).length).toBe(0);
  });
});
