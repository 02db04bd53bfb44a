import type { BodyModes } from '../../../src/contract/filter-policy.js';
import { BodyDecoder, DecodeError, parseContentEncoding, type ParsedCoding } from '../../extproc/content-coding.js';
import type { Refusal } from '../../extproc/processor.js';
import type { FilterEngine } from '../engine.js';

/**
 * One direction of an exchange as it is on the wire: its content-encoding, undone before the processors
 * read the body. What the processors do not change goes back to Envoy as it came (still encoded, its headers
 * intact); what they rewrite goes back decoded, without content-encoding and content-length.
 */

export type Direction = 'request' | 'response';

/** The most a body read without masking may decode to (masking bodies are capped by masking.maxBodyBytes). */
export const MAX_DECODED_BYTES = 8 * 1024 * 1024;

/** The headers a decoded body must lose so that Envoy frames it again. */
export const DECODED_BODY_HEADERS = ['content-encoding', 'content-length'] as const;

export class WireBody {
  private readonly coding: ParsedCoding;
  private decoder: BodyDecoder | undefined;

  constructor(
    private readonly direction: Direction,
    contentEncoding: string | undefined,
    private readonly maxBytes: number,
  ) {
    this.coding = parseContentEncoding(contentEncoding);
  }

  /** Whether the wire bytes are encoded (the processors read a decoded copy). */
  get encoded(): boolean {
    return this.coding.ok && this.coding.codings.length > 0;
  }

  /** The refusal for a coding this service cannot undo, if the body has one: never passed on unread. */
  unsupported(): Refusal | undefined {
    if (this.coding.ok) return undefined;
    const message = `the ${this.direction === 'request' ? 'request' : "model's answer"} is encoded with '${this.coding.coding}', which the gateway cannot read (it reads gzip, deflate, br and identity)`;
    return { status: this.direction === 'request' ? 415 : 502, code: 'unsupported_content_encoding', message };
  }

  /** The next chunk decoded (or as it is, when not encoded); a refusal when it cannot be. */
  async read(chunk: Buffer, last: boolean): Promise<{ body: Buffer } | { refuse: Refusal }> {
    const unsupported = this.unsupported();
    if (unsupported) return { refuse: unsupported };
    if (!this.coding.ok || this.coding.codings.length === 0) return { body: chunk };
    this.decoder ??= new BodyDecoder(this.coding.codings, this.maxBytes);
    try {
      return { body: await this.decoder.push(chunk, last) };
    } catch (err) {
      if (!(err instanceof DecodeError)) throw err;
      return { refuse: this.decodeRefusal(err) };
    }
  }

  /** Stops decoding (the exchange ended). */
  close(): void {
    this.decoder?.close();
  }

  private decodeRefusal(err: DecodeError): Refusal {
    const request = this.direction === 'request';
    if (err.reason === 'too_large') {
      return { status: request ? 413 : 502, code: 'body_too_large', message: `the ${request ? 'request' : "model's answer"} decodes to more than ${this.maxBytes} bytes; it cannot be inspected, so it is refused` };
    }
    return { status: request ? 400 : 502, code: 'bad_content_encoding', message: `the ${request ? 'request' : "model's answer"} is not valid in its content-encoding` };
  }
}

/** The cap on one direction's decoded body: the masking limit where masking reads it, else MAX_DECODED_BYTES. */
export function decodedCap(engine: FilterEngine, model: string, direction: Direction): number {
  const masking = engine.maskingOf(model);
  const masked = direction === 'request' ? masking?.request : masking?.response;
  return masked && masking ? masking.maxBodyBytes : MAX_DECODED_BYTES;
}

/**
 * Whether Envoy sends this direction's body on the model's routes. Unknown (a control plane older than the
 * `bodies` field) counts as no: a coding that cannot be read is then refused when its body arrives.
 */
export function readsBody(bodies: BodyModes | undefined, direction: Direction): boolean {
  if (!bodies) return false;
  return direction === 'request' ? bodies.request !== 'none' : bodies.response !== 'none';
}

/** Whether a rewritten body of this direction can take header changes (only buffered bodies can). */
export function bodyIsBuffered(bodies: BodyModes | undefined, direction: Direction): boolean {
  return direction === 'request' ? bodies?.request !== 'none' : bodies?.response === 'buffered';
}
