import { describe, expect, it } from 'vitest';
import { estimateRequestTokens, estimateTokens, TokenCounter } from '../../../filters/extproc/tokenizer.js';

describe('estimateTokens', () => {
  it('is 0 for the empty string and whitespace', () => {
    expect(estimateTokens('')).toBe(0);
    expect(estimateTokens('   ')).toBe(0);
  });

  it('lands near a BPE count for ordinary English', () => {
    // cl100k gives 10 tokens for this sentence.
    const n = estimateTokens('The quick brown fox jumps over the lazy dog.');
    expect(n).toBeGreaterThanOrEqual(8);
    expect(n).toBeLessThanOrEqual(14);
  });

  it('counts CJK characters one each', () => {
    expect(estimateTokens('日本語です')).toBe(5);
    expect(estimateTokens('한국어')).toBe(3);
  });

  it('splits long digit runs into groups of three', () => {
    expect(estimateTokens('123456789')).toBe(3);
  });

  it('never decreases as text is appended', () => {
    const text = 'Hello, wörld! 你好 😀 2024-01-15 — done.\nNext line: ∑ x_i = 42';
    let previous = 0;
    for (let i = 1; i <= text.length; i++) {
      const n = estimateTokens(text.slice(0, i));
      expect(n).toBeGreaterThanOrEqual(previous);
      previous = n;
    }
    expect(previous).toBeGreaterThan(10);
  });

  it('counts a text split anywhere the same as whole', () => {
    const text = 'Streaming 😀 text, split at every point: 12345 日本';
    for (let i = 0; i <= text.length; i++) {
      const counter = new TokenCounter();
      counter.push(text.slice(0, i));
      counter.push(text.slice(i));
      expect(counter.total()).toBe(estimateTokens(text));
    }
  });
});

describe('estimateRequestTokens', () => {
  it('counts chat messages with string and part contents, plus framing', () => {
    const body = {
      messages: [
        { role: 'system', content: 'You are terse.' },
        { role: 'user', content: [{ type: 'text', text: 'Hello there' }, { type: 'image_url', image_url: { url: 'x' } }] },
      ],
    };
    const text = estimateTokens('You are terse.') + estimateTokens('Hello there');
    expect(estimateRequestTokens(body)).toBe(text + 85 + 2 * 3 + 3);
  });

  it('counts prompt and input in their string and array forms', () => {
    expect(estimateRequestTokens({ prompt: 'abc def' })).toBe(estimateTokens('abc def'));
    expect(estimateRequestTokens({ prompt: ['abc', 'def'] })).toBe(2 * estimateTokens('abc'));
    expect(estimateRequestTokens({ input: 'hello world' })).toBe(estimateTokens('hello world'));
    expect(estimateRequestTokens({ input: [{ role: 'user', content: 'hi' }] })).toBe(estimateTokens('hi') + 3 + 3);
  });

  it('is 0 for bodies it does not understand', () => {
    for (const body of [null, 'text', 42, [], { foo: 'bar' }]) expect(estimateRequestTokens(body)).toBe(0);
  });

  it('grows with the conversation', () => {
    const one = { messages: [{ role: 'user', content: 'hello' }] };
    const two = { messages: [...one.messages, { role: 'assistant', content: 'hi, how can I help?' }] };
    expect(estimateRequestTokens(two)).toBeGreaterThan(estimateRequestTokens(one));
  });
});
