/**
 * A `text/event-stream` parser (the WHATWG server-sent events format) for bodies that arrive in chunks split
 * anywhere — inside a line, inside a CRLF, inside a UTF-8 sequence. It hands each event's data to a callback
 * and keeps at most `maxEventChars` of one event: a longer line or event is dropped whole, never truncated,
 * so memory stays bounded whatever the upstream sends.
 */

export interface SseParserOptions {
  /** The longest line or event data kept, in UTF-16 units; longer ones are skipped. */
  readonly maxEventChars?: number;
}

const DEFAULT_MAX_EVENT_CHARS = 1024 * 1024;

export class SseParser {
  private readonly decoder = new TextDecoder('utf-8');
  private readonly maxEventChars: number;
  private line = '';
  private lineTooLong = false;
  private afterCR = false;
  private data: string[] = [];
  private dataChars = 0;
  private eventTooLong = false;
  private hasData = false;

  /** `onEvent` receives the data of each event (its `data:` lines joined by '\n'). */
  constructor(
    private readonly onEvent: (data: string) => void,
    options: SseParserOptions = {},
  ) {
    this.maxEventChars = options.maxEventChars ?? DEFAULT_MAX_EVENT_CHARS;
  }

  /** UTF-16 units kept of the event being read (its partial line and data so far): at most about 2 x maxEventChars. */
  get heldChars(): number {
    return this.line.length + (this.eventTooLong ? 0 : this.dataChars);
  }

  /** Feeds the next chunk of the body. */
  push(chunk: Uint8Array | string): void {
    this.feed(typeof chunk === 'string' ? chunk : this.decoder.decode(chunk, { stream: true }));
  }

  /** The body ended: flushes a partial UTF-8 sequence and dispatches an event left without its blank line. */
  end(): void {
    this.feed(this.decoder.decode());
    if (this.line !== '' || this.lineTooLong) this.endLine();
    this.dispatch();
  }

  private feed(text: string): void {
    let from = 0;
    for (let i = 0; i < text.length; i++) {
      const c = text.charCodeAt(i);
      if (c !== 0x0a && c !== 0x0d) continue;
      // '\n' straight after '\r' ends nothing: the CRLF already ended the line, possibly in the last chunk.
      const isLfOfCrlf = c === 0x0a && this.afterCR && i === from;
      this.afterCR = c === 0x0d;
      if (!isLfOfCrlf) {
        this.append(text.slice(from, i));
        this.endLine();
      }
      from = i + 1;
    }
    if (from < text.length) {
      this.afterCR = false;
      this.append(text.slice(from));
    }
  }

  private append(piece: string): void {
    if (this.lineTooLong) return;
    if (this.line.length + piece.length > this.maxEventChars) {
      this.line = '';
      this.lineTooLong = true;
      return;
    }
    this.line += piece;
  }

  private endLine(): void {
    const line = this.line;
    const tooLong = this.lineTooLong;
    this.line = '';
    this.lineTooLong = false;
    if (tooLong) {
      // Whatever the field was, the event can no longer be trusted to be whole.
      this.eventTooLong = true;
      return;
    }
    if (line === '') {
      this.dispatch();
      return;
    }
    if (line.startsWith(':')) return;
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    if (field !== 'data') return;
    let value = colon < 0 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    this.hasData = true;
    this.dataChars += value.length + 1;
    if (this.dataChars > this.maxEventChars) this.eventTooLong = true;
    if (!this.eventTooLong) this.data.push(value);
  }

  private dispatch(): void {
    const data = this.data.join('\n');
    const deliver = this.hasData && !this.eventTooLong;
    this.data = [];
    this.dataChars = 0;
    this.eventTooLong = false;
    this.hasData = false;
    if (deliver) this.onEvent(data);
  }
}
