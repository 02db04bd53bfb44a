import { describe, expect, it } from 'vitest';
import { isUsageOnlyEvent, UsageChunkStripper } from '../../../filters/extproc/usage-chunk.js';

const chunk = (content: string): string => `data: ${JSON.stringify({ id: 'c1', choices: [{ index: 0, delta: { content } }], usage: null })}\n\n`;
const usage = `data: ${JSON.stringify({ id: 'c1', choices: [], usage: { prompt_tokens: 5, completion_tokens: 7, total_tokens: 12 } })}\n\n`;
const done = 'data: [DONE]\n\n';

/** Feeds `text` cut into pieces of `size` bytes; returns what would reach the client. */
function through(text: string, size: number): { out: string; stripped: number } {
  const s = new UsageChunkStripper();
  const bytes = Buffer.from(text);
  const out: Buffer[] = [];
  for (let i = 0; i < bytes.length; i += size) {
    const piece = bytes.subarray(i, i + size);
    const sent = s.push(piece, i + size >= bytes.length);
    out.push(sent ?? piece);
  }
  return { out: Buffer.concat(out).toString('utf8'), stripped: s.stripped };
}

describe('the usage chunk stripper', () => {
  const stream = chunk('Hello') + chunk(' wörld') + usage + done;
  const expected = chunk('Hello') + chunk(' wörld') + done;

  it('removes the usage-only chunk and nothing else, however the stream is cut', () => {
    for (const size of [1, 2, 3, 7, 16, 64, stream.length]) {
      const { out, stripped } = through(stream, size);
      expect(out, `pieces of ${size}`).toBe(expected);
      expect(stripped).toBe(1);
    }
  });

  it('passes whole events unchanged without copying them', () => {
    const s = new UsageChunkStripper();
    expect(s.push(Buffer.from(chunk('a')), false)).toBeUndefined();
    expect(s.push(Buffer.from(usage), false)?.length).toBe(0);
    expect(s.push(Buffer.from(done), true)).toBeUndefined();
  });

  it('understands CRLF and CR line ends, and keeps comments', () => {
    const crlf = (e: string): string => e.replace(/\n/g, '\r\n');
    const text = `: keep-alive\r\n\r\n${crlf(chunk('x'))}${crlf(usage)}${usage.replace(/\n/g, '\r')}${crlf(done)}`;
    for (const size of [1, 5, text.length]) expect(through(text, size).out).toBe(`: keep-alive\r\n\r\n${crlf(chunk('x'))}${crlf(done)}`);
  });

  it('keeps chunks that carry usage beside choices, and events that are not JSON', () => {
    const both = `data: ${JSON.stringify({ choices: [{ index: 0, delta: {} }], usage: { prompt_tokens: 1 } })}\n\n`;
    const text = both + 'data: not json usage\n\n' + done;
    expect(through(text, 4).out).toBe(text);
    expect(isUsageOnlyEvent(Buffer.from(usage))).toBe(true);
    expect(isUsageOnlyEvent(Buffer.from(`data: ${JSON.stringify({ choices: [], usage: null })}\n\n`))).toBe(false);
  });

  it('sends an unfinished last event as it is at the end', () => {
    expect(through(chunk('a') + 'data: {"cut', 3).out).toBe(chunk('a') + 'data: {"cut');
  });
});
