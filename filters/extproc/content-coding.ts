import { createBrotliDecompress, createGunzip, createInflate, type BrotliDecompress, type Gunzip, type Inflate } from 'node:zlib';

/**
 * HTTP content codings of the bodies the filter service reads (RFC 9110 section 8.4): what a
 * `content-encoding` header says was applied, and a decoder that undoes it chunk by chunk with a cap on the
 * decoded size, so a small compressed body cannot inflate without bound (a zip bomb). The decoding runs on
 * zlib's thread pool (node:zlib streams), never blocking the event loop on a large body.
 */

/** The codings this decoder undoes; `identity` means none and is dropped when parsed. */
export type ContentCoding = 'gzip' | 'deflate' | 'br';

/** More codings than this on one body is refused: no real client stacks them, a bomb would. */
const MAX_CODINGS = 2;

export type ParsedCoding = { readonly ok: true; readonly codings: readonly ContentCoding[] } | { readonly ok: false; readonly coding: string };

/**
 * The codings a `content-encoding` value lists, in the order they were applied (absent or `identity`: none);
 * the first one this decoder cannot undo, when there is one (never guessed at, never passed on unread).
 */
export function parseContentEncoding(header: string | undefined): ParsedCoding {
  if (header === undefined) return { ok: true, codings: [] };
  const codings: ContentCoding[] = [];
  for (const raw of header.split(',')) {
    const name = raw.trim().toLowerCase();
    if (name === '' || name === 'identity') continue;
    if (name === 'gzip' || name === 'x-gzip') codings.push('gzip');
    else if (name === 'deflate') codings.push('deflate');
    else if (name === 'br') codings.push('br');
    else return { ok: false, coding: name.slice(0, 40) };
  }
  if (codings.length > MAX_CODINGS) return { ok: false, coding: codings.join(', ') };
  return { ok: true, codings };
}

export type DecodeFailure = 'too_large' | 'corrupt';

/** A body that could not be decoded: over the cap, or not valid in its coding. */
export class DecodeError extends Error {
  override readonly name = 'DecodeError';
  constructor(
    readonly reason: DecodeFailure,
    message: string,
  ) {
    super(message);
  }
}

type Stage = Gunzip | Inflate | BrotliDecompress;

function stageFor(coding: ContentCoding): Stage {
  if (coding === 'gzip') return createGunzip();
  if (coding === 'deflate') return createInflate();
  return createBrotliDecompress();
}

/**
 * Undoes a body's codings as its chunks arrive. push() answers the decoded bytes each chunk yields (for the
 * last one, everything left); the total decoded size is capped at `maxBytes`, past which it fails with
 * `too_large` and stops inflating at once.
 */
export class BodyDecoder {
  /** Innermost coding last: the last coding applied is undone first. */
  private readonly stages: Stage[];
  private decoded = 0;
  private sawInput = false;
  private failed: DecodeError | undefined;

  constructor(
    codings: readonly ContentCoding[],
    private readonly maxBytes: number,
  ) {
    this.stages = [...codings].reverse().map(stageFor);
  }

  /** The decoded bytes so far. */
  get decodedBytes(): number {
    return this.decoded;
  }

  /** Decodes the next chunk; `last` ends the body (a truncated one fails with `corrupt`). */
  async push(chunk: Buffer, last: boolean): Promise<Buffer> {
    if (this.failed) throw this.failed;
    if (chunk.length > 0) this.sawInput = true;
    if (last && !this.sawInput) {
      // No body at all (a HEAD, a 204, a 304) has nothing to decode, whatever its headers say.
      this.close();
      return Buffer.alloc(0);
    }
    let data = chunk;
    for (let i = 0; i < this.stages.length; i++) {
      const isOutermost = i === this.stages.length - 1;
      data = await this.run(this.stages[i] as Stage, data, last, isOutermost);
    }
    return data;
  }

  /** Stops every stage (the exchange ended early). */
  close(): void {
    for (const stage of this.stages) stage.destroy();
  }

  /** Writes `input` through one stage and collects what it gives back for it. */
  private run(stage: Stage, input: Buffer, last: boolean, counted: boolean): Promise<Buffer> {
    return new Promise<Buffer>((resolve, reject) => {
      const out: Buffer[] = [];
      const fail = (err: DecodeError): void => {
        this.failed = err;
        cleanup();
        stage.destroy();
        reject(err);
      };
      const onData = (piece: Buffer): void => {
        // Every stage is capped, not only the last: an inner bomb must not inflate whole before the outer one counts.
        if (counted) this.decoded += piece.length;
        const size = out.reduce((n, b) => n + b.length, 0) + piece.length;
        if ((counted ? this.decoded : size) > this.maxBytes) {
          fail(new DecodeError('too_large', `the body decodes to more than ${this.maxBytes} bytes`));
          return;
        }
        out.push(piece);
      };
      const onError = (err: Error): void => fail(new DecodeError('corrupt', `the body is not valid in its content-encoding: ${err.message}`));
      const onEnd = (): void => {
        cleanup();
        resolve(Buffer.concat(out));
      };
      const cleanup = (): void => {
        stage.off('data', onData);
        stage.off('error', onError);
        stage.off('end', onEnd);
      };
      stage.on('data', onData);
      stage.on('error', onError);
      if (last) {
        stage.on('end', onEnd);
        stage.end(input);
        return;
      }
      stage.write(input);
      // A flush makes zlib hand over everything this chunk decodes to before we answer for it.
      stage.flush(() => {
        if (this.failed) return;
        cleanup();
        resolve(Buffer.concat(out));
      });
    });
  }
}
