import type * as grpc from '@grpc/grpc-js';
import { EventEmitter } from 'node:events';
import { messageFrame } from './grpc-unary.js';

/**
 * A bidirectional-streaming call (ext_proc's Process) on the raw transport, shaped as the part of grpc-js's
 * `ServerDuplexStream` the ext_proc handlers use: `metadata.get`, the `data`, `end`, `cancelled` and `error`
 * events, `write`, `end` and `writableEnded`. The connection (raw-transport.ts) feeds it decoded request
 * messages and sends what it writes as DATA frames under HTTP/2 flow control, then `grpc-status: 0`.
 */

/** A streaming method: its message codec and the handler that takes the call. */
export interface StreamingMethod {
  readonly decode: (bytes: Buffer) => unknown;
  readonly encode: (message: object) => Buffer;
  readonly handle: (call: grpc.ServerDuplexStream<unknown, object>) => void;
}

/** What the connection does with a call's output. */
export interface DuplexOutput {
  /** One length-prefixed answer message. */
  message(frame: Buffer): void;
  /** The call ends with OK (after the messages written). */
  end(): void;
  /** The call ends with this status (an answer that does not encode). */
  fail(code: number, message: string): void;
}

/** The request headers of a call, read as grpc-js's Metadata.get reads them (every value of a key). */
class HeaderMetadata {
  constructor(private readonly fields: ReadonlyMap<string, string[]>) {}
  get(key: string): string[] {
    return this.fields.get(key.toLowerCase()) ?? [];
  }
}

export class DuplexCall extends EventEmitter {
  writableEnded = false;
  cancelled = false;
  readonly metadata: HeaderMetadata;

  constructor(
    fields: ReadonlyMap<string, string[]>,
    private readonly encode: (message: object) => Buffer,
    private readonly output: DuplexOutput,
  ) {
    super();
    this.metadata = new HeaderMetadata(fields);
  }

  write(message: object): boolean {
    if (this.writableEnded || this.cancelled) return false;
    let bytes: Buffer;
    try {
      bytes = this.encode(message);
    } catch {
      this.writableEnded = true;
      this.output.fail(13, 'answer does not encode');
      return false;
    }
    this.output.message(messageFrame(bytes));
    return true;
  }

  end(): void {
    if (this.writableEnded) return;
    this.writableEnded = true;
    if (!this.cancelled) this.output.end();
  }

  /** The client reset the stream, the connection closed, or the call failed: the handler lets go. */
  cancel(): void {
    if (this.cancelled) return;
    this.cancelled = true;
    this.emit('cancelled');
  }
}
