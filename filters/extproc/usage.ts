import { SseParser } from './sse.js';
import { TokenCounter } from './tokenizer.js';

/**
 * Token usage as an upstream reports it, for token quotas: from a whole JSON response, or from a streamed
 * (`text/event-stream`) one. Only the known places are read — the body's top level and its `usage` member
 * (plus `message.usage` and `response.usage` in stream events, where Anthropic and the OpenAI Responses API
 * put it) — never a search of the whole document, which a model's generated JSON could spoof.
 */

export interface Usage {
  readonly input: number;
  readonly output: number;
  readonly total: number;
  /** True when counted by the heuristic tokenizer because the upstream reported nothing. */
  readonly estimated: boolean;
}

type Counts = { input?: number; output?: number; total?: number };

const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const count = (v: unknown): number | undefined => (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0 ? v : undefined);

/**
 * The counts in one usage object: OpenAI's prompt/completion/total_tokens or Anthropic's input/output_tokens
 * (Anthropic's cache reads and writes are input it processed, so they are added to input).
 */
function countsIn(usage: unknown): Counts | undefined {
  if (!isRecord(usage)) return undefined;
  const prompt = count(usage.prompt_tokens) ?? count(usage.input_tokens);
  const input =
    prompt === undefined ? undefined : prompt + (count(usage.cache_creation_input_tokens) ?? 0) + (count(usage.cache_read_input_tokens) ?? 0);
  const output = count(usage.completion_tokens) ?? count(usage.output_tokens);
  if (input === undefined && output === undefined) return undefined;
  const counts: Counts = {};
  if (input !== undefined) counts.input = input;
  if (output !== undefined) counts.output = output;
  const total = count(usage.total_tokens);
  if (total !== undefined) counts.total = total;
  return counts;
}

function toUsage(c: Counts, estimated: boolean): Usage {
  const input = c.input ?? 0;
  const output = c.output ?? 0;
  return { input, output, total: c.total ?? input + output, estimated };
}

function parse(body: string | Uint8Array): unknown {
  try {
    return JSON.parse(typeof body === 'string' ? body : new TextDecoder().decode(body));
  } catch {
    return undefined;
  }
}

/** The usage a JSON response reports under `usage` or at its top level, or undefined when it reports none. */
export function usageFromJson(body: string | Uint8Array): Usage | undefined {
  const doc = parse(body);
  if (!isRecord(doc)) return undefined;
  const counts = countsIn(doc.usage) ?? countsIn(doc);
  return counts === undefined ? undefined : toUsage(counts, false);
}

export interface SseUsageOptions {
  /** Input tokens to report with an estimate (e.g. estimateRequestTokens of the request); default 0. */
  readonly estimatedInput?: number;
  /** Passed to the SSE parser: longer events are skipped. */
  readonly maxEventChars?: number;
}

/**
 * Reads usage from a streamed response fed chunk by chunk. Reported counts win, field by field, the last
 * report of each field kept (Anthropic reports input at message_start and output at message_delta; OpenAI's
 * final chunk carries everything). Generated text is only counted, never kept, so memory does not grow with
 * the stream.
 */
export class SseUsageReader {
  private readonly parser: SseParser;
  private readonly generated = new TokenCounter();
  private reported: Counts | undefined;
  private sawEvent = false;
  private readonly estimatedInput: number;

  constructor(options: SseUsageOptions = {}) {
    this.estimatedInput = options.estimatedInput ?? 0;
    this.parser = new SseParser((data) => this.onEvent(data), options.maxEventChars === undefined ? {} : { maxEventChars: options.maxEventChars });
  }

  /** Feeds the next chunk of the response body. */
  push(chunk: Uint8Array | string): void {
    this.parser.push(chunk);
  }

  /** The stream ended; an event that lacked its closing blank line is still read. */
  end(): void {
    this.parser.end();
  }

  /** Bytes of the stream kept while an event is incomplete (JavaScript strings take two per unit). */
  get heldBytes(): number {
    return this.parser.heldChars * 2;
  }

  /** Tokens of the generated text seen so far, by the heuristic tokenizer, whatever the stream reported. */
  get generatedTokens(): number {
    return this.generated.total();
  }

  /** Reported usage, else an estimate of the generated text (estimated: true), else undefined when no event was read. */
  result(): Usage | undefined {
    if (this.reported !== undefined) return toUsage(this.reported, false);
    if (!this.sawEvent) return undefined;
    const output = this.generated.total();
    return { input: this.estimatedInput, output, total: this.estimatedInput + output, estimated: true };
  }

  private onEvent(data: string): void {
    if (data === '[DONE]') return;
    let event: unknown;
    try {
      event = JSON.parse(data);
    } catch {
      return;
    }
    if (!isRecord(event)) return;
    this.sawEvent = true;
    for (const place of [event.usage, isRecord(event.message) ? event.message.usage : undefined, isRecord(event.response) ? event.response.usage : undefined]) {
      const counts = countsIn(place);
      if (counts === undefined) continue;
      // A report without a total makes an earlier total stale: the total is then recomputed.
      const { total: _stale, ...previous } = this.reported ?? {};
      this.reported = { ...previous, ...counts };
    }
    this.countText(event);
  }

  /** Generated text in OpenAI chat (`choices[].delta.content`), completion (`choices[].text`) and Anthropic (`delta.text`) events. */
  private countText(event: Record<string, unknown>): void {
    if (Array.isArray(event.choices)) {
      for (const choice of event.choices) {
        if (!isRecord(choice)) continue;
        if (isRecord(choice.delta) && typeof choice.delta.content === 'string') this.generated.push(choice.delta.content);
        if (typeof choice.text === 'string') this.generated.push(choice.text);
      }
    }
    if (isRecord(event.delta) && typeof event.delta.text === 'string') this.generated.push(event.delta.text);
  }
}
