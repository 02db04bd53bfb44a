import { describe, expect, it } from 'vitest';
import { SseUsageReader, usageFromJson } from '../../../filters/extproc/usage.js';
import { estimateTokens } from '../../../filters/extproc/tokenizer.js';

describe('usageFromJson', () => {
  it('reads OpenAI usage', () => {
    const body = JSON.stringify({ id: 'x', choices: [], usage: { prompt_tokens: 12, completion_tokens: 30, total_tokens: 42 } });
    expect(usageFromJson(body)).toEqual({ input: 12, output: 30, total: 42, estimated: false });
  });

  it('reads Anthropic usage from bytes, adding cache tokens to input and computing the total', () => {
    const body = new TextEncoder().encode(JSON.stringify({ type: 'message', usage: { input_tokens: 7, output_tokens: 5, cache_read_input_tokens: 3 } }));
    expect(usageFromJson(body)).toEqual({ input: 10, output: 5, total: 15, estimated: false });
  });

  it('reads counts at the top level', () => {
    expect(usageFromJson('{"input_tokens": 4, "output_tokens": 6}')).toEqual({ input: 4, output: 6, total: 10, estimated: false });
  });

  it('returns undefined when there is no usage, bad counts, or no JSON', () => {
    for (const body of ['{"choices": []}', '{"usage": null}', '{"usage": {"prompt_tokens": -1}}', '{"usage": {"prompt_tokens": "12"}}', '[1]', 'nope']) {
      expect(usageFromJson(body)).toBeUndefined();
    }
  });

  it('does not hunt for usage deeper in the document', () => {
    expect(usageFromJson('{"data": {"usage": {"prompt_tokens": 1, "completion_tokens": 2}}}')).toBeUndefined();
  });
});

const OPENAI_STREAM = [
  ': keep-alive comment',
  '',
  'data: {"choices":[{"delta":{"role":"assistant","content":""}}],"usage":null}',
  '',
  'data: {"choices":[{"delta":{"content":"Héllo wörld 😀, "}}],"usage":null}',
  '',
  'data: {"choices":[{"delta":{"content":"日本語です"}}],"usage":null}',
  '',
  'event: ignored',
  'data: {"choices":[],',
  'data:  "usage":{"prompt_tokens":9,"completion_tokens":11,"total_tokens":20}}',
  '',
  'data: [DONE]',
  '',
  '',
].join('\r\n');

function readAll(chunks: readonly (Uint8Array | string)[]): ReturnType<SseUsageReader['result']> {
  const reader = new SseUsageReader();
  for (const chunk of chunks) reader.push(chunk);
  reader.end();
  return reader.result();
}

describe('SseUsageReader', () => {
  it('takes usage from a multi-line data event', () => {
    expect(readAll([OPENAI_STREAM])).toEqual({ input: 9, output: 11, total: 20, estimated: false });
  });

  it('gives the same result whatever byte the stream is split at', () => {
    const bytes = new TextEncoder().encode(OPENAI_STREAM);
    const withoutUsage = new TextEncoder().encode(OPENAI_STREAM.replace(/"usage":\{[^}]*\}/, '"usage":null'));
    const whole = readAll([withoutUsage]);
    expect(whole?.estimated).toBe(true);
    for (let cut = 0; cut <= bytes.length; cut++) {
      expect(readAll([bytes.subarray(0, cut), bytes.subarray(cut)])).toEqual({ input: 9, output: 11, total: 20, estimated: false });
    }
    for (let cut = 0; cut <= withoutUsage.length; cut++) {
      expect(readAll([withoutUsage.subarray(0, cut), withoutUsage.subarray(cut)])).toEqual(whole);
    }
  });

  it('gives the same result fed one byte at a time', () => {
    const bytes = new TextEncoder().encode(OPENAI_STREAM);
    expect(readAll(Array.from(bytes, (_, i) => bytes.subarray(i, i + 1)))).toEqual({ input: 9, output: 11, total: 20, estimated: false });
  });

  it('merges Anthropic reports: input from message_start, output from the last message_delta', () => {
    const stream = [
      'event: message_start',
      'data: {"type":"message_start","message":{"usage":{"input_tokens":25,"output_tokens":1}}}',
      '',
      'event: content_block_delta',
      'data: {"type":"content_block_delta","delta":{"type":"text_delta","text":"Hi there"}}',
      '',
      'event: message_delta',
      'data: {"type":"message_delta","usage":{"output_tokens":15}}',
      '',
      '',
    ].join('\n');
    expect(readAll([stream])).toEqual({ input: 25, output: 15, total: 40, estimated: false });
  });

  it('estimates from the generated text when no usage is reported', () => {
    const text = 'The quick brown fox jumps over the lazy dog. 12345';
    const pieces = ['The quick br', 'own fox jumps over', ' the lazy dog. 12', '345'];
    const stream = pieces.map((p) => `data: ${JSON.stringify({ choices: [{ delta: { content: p } }] })}\n\n`).join('') + 'data: [DONE]\n\n';
    const result = readAll([stream]);
    expect(result).toEqual({ input: 0, output: estimateTokens(text), total: estimateTokens(text), estimated: true });
    expect(result?.output).toBeGreaterThan(0);
  });

  it('counts completion text and Anthropic deltas, and reports a given input estimate', () => {
    const reader = new SseUsageReader({ estimatedInput: 100 });
    reader.push('data: {"choices":[{"text":"alpha beta"}]}\n\ndata: {"delta":{"text":" gamma"}}\n\n');
    reader.end();
    const output = estimateTokens('alpha beta gamma');
    expect(reader.result()).toEqual({ input: 100, output, total: 100 + output, estimated: true });
  });

  it('returns undefined when no event was read', () => {
    expect(readAll([': just a comment\n\n'])).toBeUndefined();
    expect(readAll(['data: [DONE]\n\n'])).toBeUndefined();
  });

  it('skips an event longer than the limit instead of keeping it', () => {
    const reader = new SseUsageReader({ maxEventChars: 200 });
    reader.push(`data: {"pad":"${'x'.repeat(500)}","usage":{"prompt_tokens":1,"completion_tokens":1}}\n\n`);
    reader.push('data: {"usage":{"prompt_tokens":2,"completion_tokens":3}}\n\n');
    reader.end();
    expect(reader.result()).toEqual({ input: 2, output: 3, total: 5, estimated: false });
  });
});
