/**
 * Token estimates for quota accounting when an upstream reports no usage. Not a tokenizer: a heuristic
 * tuned to land near BPE tokenizers (cl100k/o200k-like) on ordinary text, and cheap enough to run on every
 * streamed chunk.
 *
 * The rules, per run of characters of one class:
 * - Latin-script words (letters, `_`, `'` inside a word): one token per started 5 characters — short words
 *   are one token, long ones split (`information` → 3, real BPE: 1–2).
 * - Other alphabetic scripts (Cyrillic, Greek, Arabic, Hebrew, Devanagari, …): one token per started
 *   2 letters; BPE vocabularies hold far fewer of their merges.
 * - Digits: one token per started 3 digits (BPE tokenizers split numbers into groups of up to three).
 * - CJK ideographs, kana and Hangul syllables: one token each.
 * - Punctuation and symbols: one token per started 2 characters of a run (`, ` → 1, `...` → 2).
 * - Emoji and other astral symbols: two tokens each.
 * - Whitespace: free, except that each run containing a newline counts one.
 *
 * Estimates only grow as text is appended, and splitting a text anywhere and feeding the pieces to one
 * TokenCounter gives the same count as feeding it whole.
 */

/** Character classes; a run of one class is counted as a unit. */
const enum Kind {
  None,
  Latin,
  Script,
  Digit,
  Punct,
  Space,
}

const isCjk = (cp: number): boolean =>
  (cp >= 0x3040 && cp <= 0x30ff) || // hiragana, katakana
  (cp >= 0x3400 && cp <= 0x4dbf) ||
  (cp >= 0x4e00 && cp <= 0x9fff) ||
  (cp >= 0xac00 && cp <= 0xd7af) || // hangul syllables
  (cp >= 0xf900 && cp <= 0xfaff) ||
  (cp >= 0x20000 && cp <= 0x3134f);

const LETTER = /\p{L}|\p{M}/u;
const SPACE = /\s/u;

function kindOf(cp: number, ch: string): Kind | 'cjk' | 'astral' {
  if (cp < 0x80) {
    if ((cp >= 0x61 && cp <= 0x7a) || (cp >= 0x41 && cp <= 0x5a) || cp === 0x5f) return Kind.Latin;
    if (cp >= 0x30 && cp <= 0x39) return Kind.Digit;
    if (cp === 0x20 || (cp >= 0x09 && cp <= 0x0d)) return Kind.Space;
    return Kind.Punct;
  }
  if (isCjk(cp)) return 'cjk';
  if (cp < 0x250) return LETTER.test(ch) ? Kind.Latin : SPACE.test(ch) ? Kind.Space : Kind.Punct;
  if (LETTER.test(ch)) return Kind.Script;
  if (SPACE.test(ch)) return Kind.Space;
  return cp > 0xffff ? 'astral' : Kind.Punct;
}

/** Characters per token for each run kind (Space is handled apart). */
const PER_TOKEN: Readonly<Record<Kind, number>> = {
  [Kind.None]: 1,
  [Kind.Latin]: 5,
  [Kind.Script]: 2,
  [Kind.Digit]: 3,
  [Kind.Punct]: 2,
  [Kind.Space]: 1,
};

/** An estimate built up from pieces of text in constant memory. */
export class TokenCounter {
  private closed = 0;
  private kind = Kind.None;
  private runLength = 0;
  private runHasNewline = false;
  private pendingHigh = '';

  /** Adds the next piece of text. */
  push(text: string): void {
    const input = this.pendingHigh + text;
    this.pendingHigh = '';
    for (let i = 0; i < input.length; ) {
      const cp = input.codePointAt(i) as number;
      const width = cp > 0xffff ? 2 : 1;
      if (width === 1 && cp >= 0xd800 && cp <= 0xdbff && i === input.length - 1) {
        // A surrogate pair split between pieces: wait for its second half.
        this.pendingHigh = input.slice(i);
        break;
      }
      const ch = input.slice(i, i + width);
      i += width;
      const kind = kindOf(cp, ch);
      // An apostrophe inside a Latin word stays in the word ("don't" is one run).
      const k = kind === Kind.Punct && ch === "'" && this.kind === Kind.Latin ? Kind.Latin : kind;
      if (k === 'cjk' || k === 'astral') {
        this.closeRun();
        this.closed += k === 'cjk' ? 1 : 2;
        continue;
      }
      if (k !== this.kind) {
        this.closeRun();
        this.kind = k;
      }
      this.runLength++;
      if (k === Kind.Space && ch === '\n') this.runHasNewline = true;
    }
  }

  /** The estimate for everything pushed so far. */
  total(): number {
    return this.closed + this.runTokens() + (this.pendingHigh === '' ? 0 : 2);
  }

  private runTokens(): number {
    if (this.kind === Kind.None) return 0;
    if (this.kind === Kind.Space) return this.runHasNewline ? 1 : 0;
    return Math.ceil(this.runLength / PER_TOKEN[this.kind]);
  }

  private closeRun(): void {
    this.closed += this.runTokens();
    this.kind = Kind.None;
    this.runLength = 0;
    this.runHasNewline = false;
  }
}

/** The heuristic token count of `text` (see the header); 0 for the empty string. */
export function estimateTokens(text: string): number {
  const counter = new TokenCounter();
  counter.push(text);
  return counter.total();
}

/** Per-message framing (role, separators) and the reply primer, as OpenAI documents for chat models. */
const PER_MESSAGE = 3;
const REPLY_PRIMER = 3;
/** An image part's base cost at low detail; higher detail costs more, which this does not try to know. */
const IMAGE_PART = 85;

const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Tokens in a message `content`: a string, or an array of parts (`text`/`input_text`, images at a flat cost). */
function contentTokens(content: unknown): number {
  if (typeof content === 'string') return estimateTokens(content);
  if (!Array.isArray(content)) return 0;
  let tokens = 0;
  for (const part of content) {
    if (typeof part === 'string') tokens += estimateTokens(part);
    else if (isRecord(part)) {
      if (typeof part.text === 'string') tokens += estimateTokens(part.text);
      else if (typeof part.type === 'string' && part.type.includes('image')) tokens += IMAGE_PART;
    }
  }
  return tokens;
}

function messagesTokens(messages: readonly unknown[]): number {
  let tokens = REPLY_PRIMER;
  for (const m of messages) {
    if (typeof m === 'string') tokens += PER_MESSAGE + estimateTokens(m);
    else if (isRecord(m)) tokens += PER_MESSAGE + contentTokens(m.content);
  }
  return tokens;
}

/**
 * The input-token estimate of a parsed model request: chat `messages` (with an Anthropic-style `system`),
 * completion `prompt` (string or strings), or `input` (string, strings, or Responses-API message items).
 * 0 for anything else.
 */
export function estimateRequestTokens(body: unknown): number {
  if (!isRecord(body)) return 0;
  let tokens = 0;
  if (Array.isArray(body.messages)) tokens += messagesTokens(body.messages);
  if (body.system !== undefined) tokens += contentTokens(body.system);
  for (const field of [body.prompt, body.input]) {
    if (typeof field === 'string') tokens += estimateTokens(field);
    else if (Array.isArray(field)) {
      tokens += field.some(isRecord) ? messagesTokens(field) : field.reduce<number>((sum, p) => sum + (typeof p === 'string' ? estimateTokens(p) : 0), 0);
    }
  }
  return tokens;
}
