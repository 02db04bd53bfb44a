/**
 * Removes OpenAI's usage-only chunk (the event with `"choices": []` and a `usage` object, sent last when a
 * stream is asked `stream_options.include_usage`) from a server-sent-event stream, byte for byte otherwise:
 * every other event, comment and `[DONE]` passes unchanged, in order. Events are cut at their blank line
 * (`\n\n`, `\r\n\r\n`, `\r\r` or a mix, as the SSE grammar allows); an event's bytes are held until its blank
 * line arrives, so what is passed on is always whole events and the stream stays valid.
 */

const LF = 0x0a;
const CR = 0x0d;

const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Whether one event (its bytes, blank line included) is a usage-only chunk. */
export function isUsageOnlyEvent(event: Buffer): boolean {
  const text = event.toString('utf8');
  if (!text.includes('usage')) return false;
  const data = text
    .split(/\r\n|\r|\n/)
    .filter((line) => line.startsWith('data:'))
    .map((line) => line.slice(line.startsWith('data: ') ? 6 : 5))
    .join('\n');
  if (data === '') return false;
  let doc: unknown;
  try {
    doc = JSON.parse(data);
  } catch {
    return false;
  }
  return isRecord(doc) && Array.isArray(doc.choices) && doc.choices.length === 0 && isRecord(doc.usage);
}

export class UsageChunkStripper {
  private pending: Buffer = Buffer.alloc(0);
  /** How many usage-only events were removed. */
  stripped = 0;

  /** Bytes held (an event whose blank line has not arrived). */
  get heldBytes(): number {
    return this.pending.length;
  }

  /**
   * Feeds the next chunk; returns what to send now: `undefined` when that is the chunk itself, unchanged
   * (the common case: whole events, none stripped), else the bytes to send (maybe empty).
   */
  push(chunk: Buffer, last: boolean): Buffer | undefined {
    const held = this.pending.length;
    const data = held === 0 ? chunk : Buffer.concat([this.pending, chunk]);
    const out: Buffer[] = [];
    let changed = false;
    let start = 0;
    let lineStart = 0;
    let i = 0;
    while (i < data.length) {
      const b = data[i];
      if (b !== LF && b !== CR) {
        i += 1;
        continue;
      }
      // A CR at the very end may be the first half of a CRLF: wait for the next byte (unless the stream ends).
      if (b === CR && i + 1 === data.length && !last) break;
      const end = b === CR && data[i + 1] === LF ? i + 2 : i + 1;
      if (i === lineStart) {
        // An empty line: the event from `start` ends here.
        const event = data.subarray(start, end);
        if (isUsageOnlyEvent(event)) {
          this.stripped += 1;
          changed = true;
        } else out.push(event);
        start = end;
      }
      lineStart = end;
      i = end;
    }
    if (last) {
      if (start < data.length) out.push(data.subarray(start));
      start = data.length;
    }
    this.pending = Buffer.from(data.subarray(start));
    if (!changed && held === 0 && this.pending.length === 0) return undefined;
    return Buffer.concat(out);
  }
}
