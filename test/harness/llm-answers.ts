import { createHash } from 'node:crypto';

/**
 * The answers of the LLM stand-in upstream (llm-upstream.ts), as pure functions of the request and the
 * upstream's label: OpenAI chat completions, completions, embeddings and models, and Anthropic messages, in
 * JSON and as server-sent events. The same rules as the MLflow demo ChatModel (examples/llm-model), so a
 * test can predict every answer: the text is "[<label>] <last user text>", a token is a whitespace-separated
 * word, max_tokens cuts the answer to that many words.
 */

/** Token counts that replace the computed ones (a test charging quotas with known numbers). */
export interface UsageOverride {
  promptTokens?: number;
  completionTokens?: number;
}

/** One server-sent event; `event` is the SSE event name (Anthropic names every event, OpenAI none). */
export interface SseEvent {
  event?: string;
  data: string;
}

type Json = Record<string, unknown>;

/** The demo tokenizer: whitespace-separated words. */
export function countTokens(text: string): number {
  return text.split(/\s+/).filter(Boolean).length;
}

/** The text of a message's content: a string, or the text parts of a list of content parts or blocks. */
export function contentText(content: unknown): string {
  if (typeof content === 'string') return content;
  if (!Array.isArray(content)) return '';
  return content
    .filter((part): part is Json => typeof part === 'object' && part !== null && (part as Json).type === 'text')
    .map((part) => (typeof part.text === 'string' ? part.text : ''))
    .join(' ');
}

/** The answer's words and why they stop, for a question and an optional word limit. */
function reply(label: string, question: string, maxTokens: unknown): { words: string[]; truncated: boolean } {
  const words = `[${label}] ${question}`.split(/\s+/).filter(Boolean);
  if (typeof maxTokens === 'number' && maxTokens >= 0 && words.length > maxTokens) return { words: words.slice(0, maxTokens), truncated: true };
  return { words, truncated: false };
}

/** A stable id: the same request to the same upstream gets the same id. */
function idFor(prefix: string, label: string, body: unknown): string {
  return prefix + createHash('sha256').update(label).update('\0').update(JSON.stringify(body)).digest('hex').slice(0, 24);
}

function messagesOf(body: Json): Json[] {
  return Array.isArray(body.messages) ? (body.messages.filter((m) => typeof m === 'object' && m !== null) as Json[]) : [];
}

function lastUserText(messages: Json[]): string {
  const last = [...messages].reverse().find((m) => m.role === 'user');
  return last ? contentText(last.content) : '';
}

function openaiUsage(prompt: number, completion: number, override: UsageOverride = {}): Json {
  const promptTokens = override.promptTokens ?? prompt;
  const completionTokens = override.completionTokens ?? completion;
  return { prompt_tokens: promptTokens, completion_tokens: completionTokens, total_tokens: promptTokens + completionTokens };
}

function choiceCount(body: Json): number {
  return typeof body.n === 'number' && body.n > 1 ? Math.floor(body.n) : 1;
}

/** OpenAI's stream_options.include_usage: the only thing that makes a stream carry usage. */
function wantsStreamUsage(body: Json): boolean {
  const options = body.stream_options as Json | undefined;
  return typeof options === 'object' && options !== null && options.include_usage === true;
}

const created = (): number => Math.floor(Date.now() / 1000);

/** Chunks as OpenAI streams them: `usage: null` on every chunk, and a last one with empty choices, only when asked. */
function openaiStream(body: Json, chunks: Json[], usage: Json): SseEvent[] {
  const withUsage = wantsStreamUsage(body);
  const events = chunks.map((chunk) => ({ data: JSON.stringify(withUsage ? { ...chunk, usage: null } : chunk) }));
  if (withUsage) events.push({ data: JSON.stringify({ ...chunks[0], choices: [], usage }) });
  events.push({ data: '[DONE]' });
  return events;
}

/** The `POST /v1/chat/completions` answer for `body` (a chat.completion object). */
export function chatCompletion(body: Json, label: string, override?: UsageOverride): Json {
  const messages = messagesOf(body);
  const { words, truncated } = reply(label, lastUserText(messages), body.max_completion_tokens ?? body.max_tokens);
  const n = choiceCount(body);
  const prompt = messages.reduce((sum, m) => sum + countTokens(contentText(m.content)), 0);
  return {
    id: idFor('chatcmpl-', label, body),
    object: 'chat.completion',
    created: created(),
    model: body.model,
    choices: Array.from({ length: n }, (_, index) => ({
      index,
      message: { role: 'assistant', content: words.join(' '), refusal: null, annotations: [] },
      logprobs: null,
      finish_reason: truncated ? 'length' : 'stop',
    })),
    usage: openaiUsage(prompt, words.length * n, override),
    service_tier: 'default',
    system_fingerprint: `fp_${label}`,
  };
}

/** The same answer as chatCompletion, as the SSE events of `stream: true` (ending with `data: [DONE]`). */
export function chatCompletionStream(body: Json, label: string, override?: UsageOverride): SseEvent[] {
  const whole = chatCompletion(body, label, override);
  const text = ((whole.choices as Json[])[0]?.message as Json).content as string;
  const finishReason = (whole.choices as Json[])[0]?.finish_reason;
  const base = { id: whole.id, object: 'chat.completion.chunk', created: whole.created, model: whole.model, service_tier: 'default', system_fingerprint: whole.system_fingerprint };
  const n = choiceCount(body);
  const chunk = (index: number, delta: Json, finish: unknown = null): Json => ({ ...base, choices: [{ index, delta, logprobs: null, finish_reason: finish }] });
  const chunks: Json[] = [];
  for (let index = 0; index < n; index++) {
    chunks.push(chunk(index, { role: 'assistant', content: '', refusal: null }));
    text.split(' ').filter(Boolean).forEach((word, i) => chunks.push(chunk(index, { content: i === 0 ? word : ` ${word}` })));
    chunks.push(chunk(index, {}, finishReason));
  }
  return openaiStream(body, chunks, whole.usage as Json);
}

/** The `POST /v1/completions` answer: one choice per prompt (a string or a list of strings), times n. */
export function textCompletion(body: Json, label: string, override?: UsageOverride): Json {
  const prompts = Array.isArray(body.prompt) ? body.prompt.map((p) => (typeof p === 'string' ? p : JSON.stringify(p))) : [typeof body.prompt === 'string' ? body.prompt : JSON.stringify(body.prompt ?? '')];
  const n = choiceCount(body);
  const choices: Json[] = [];
  let completion = 0;
  for (const prompt of prompts) {
    const { words, truncated } = reply(label, prompt, body.max_tokens);
    for (let i = 0; i < n; i++) {
      choices.push({ text: words.join(' '), index: choices.length, logprobs: null, finish_reason: truncated ? 'length' : 'stop' });
      completion += words.length;
    }
  }
  const prompt = prompts.reduce((sum, p) => sum + countTokens(p), 0);
  return { id: idFor('cmpl-', label, body), object: 'text_completion', created: created(), model: body.model, choices, usage: openaiUsage(prompt, completion, override), system_fingerprint: `fp_${label}` };
}

/** textCompletion as the SSE events of `stream: true`. */
export function textCompletionStream(body: Json, label: string, override?: UsageOverride): SseEvent[] {
  const whole = textCompletion(body, label, override);
  const base = { id: whole.id, object: 'text_completion', created: whole.created, model: whole.model, system_fingerprint: whole.system_fingerprint };
  const chunks: Json[] = [];
  for (const choice of whole.choices as Json[]) {
    const words = String(choice.text).split(' ').filter(Boolean);
    words.forEach((word, i) => chunks.push({ ...base, choices: [{ text: i === 0 ? word : ` ${word}`, index: choice.index, logprobs: null, finish_reason: null }] }));
    chunks.push({ ...base, choices: [{ text: '', index: choice.index, logprobs: null, finish_reason: choice.finish_reason }] });
  }
  return openaiStream(body, chunks, whole.usage as Json);
}

/**
 * The embedding of `text` by the upstream labelled `label`: `dimensions` float32 values from a hash of both,
 * scaled to unit length. Exported so a test can compute what any client should decode.
 */
export function embeddingVector(label: string, text: string, dimensions = 8): number[] {
  const raw: number[] = [];
  for (let block = 0; raw.length < dimensions; block++) {
    const digest = createHash('sha256').update(`${label}\0${block}\0${text}`).digest();
    for (const byte of digest) if (raw.length < dimensions) raw.push(byte / 127.5 - 1);
  }
  const norm = Math.sqrt(raw.reduce((sum, v) => sum + v * v, 0)) || 1;
  return raw.map((v) => Math.fround(v / norm));
}

/** The `POST /v1/embeddings` answer; `encoding_format: "base64"` (the SDKs' default) packs float32 little-endian. */
export function embeddings(body: Json, label: string, override?: UsageOverride): Json {
  const inputs = Array.isArray(body.input) && body.input.some((i) => typeof i !== 'number') ? body.input : [body.input];
  const texts = inputs.map((i) => (typeof i === 'string' ? i : JSON.stringify(i)));
  const dimensions = typeof body.dimensions === 'number' && body.dimensions > 0 ? Math.floor(body.dimensions) : 8;
  const data = texts.map((text, index) => {
    const vector = embeddingVector(label, text, dimensions);
    const embedding = body.encoding_format === 'base64' ? Buffer.from(new Float32Array(vector).buffer).toString('base64') : vector;
    return { object: 'embedding', index, embedding };
  });
  const prompt = override?.promptTokens ?? texts.reduce((sum, t) => sum + countTokens(t), 0);
  return { object: 'list', data, model: body.model, usage: { prompt_tokens: prompt, total_tokens: prompt } };
}

/** A `GET /v1/models` entry. */
export function modelEntry(id: string, label: string): Json {
  return { id, object: 'model', created: 1_700_000_000, owned_by: label };
}

/** The `POST /v1/messages` answer (Anthropic's Messages API). */
export function anthropicMessage(body: Json, label: string, override?: UsageOverride): Json {
  const messages = messagesOf(body);
  const { words, truncated } = reply(label, lastUserText(messages), body.max_tokens);
  const input = countTokens(contentText(body.system)) + messages.reduce((sum, m) => sum + countTokens(contentText(m.content)), 0);
  return {
    id: idFor('msg_', label, body),
    type: 'message',
    role: 'assistant',
    model: body.model,
    content: [{ type: 'text', text: words.join(' ') }],
    stop_reason: truncated ? 'max_tokens' : 'end_turn',
    stop_sequence: null,
    usage: { input_tokens: override?.promptTokens ?? input, output_tokens: override?.completionTokens ?? words.length },
  };
}

/**
 * anthropicMessage as Anthropic streams it: message_start (input tokens, output 1 so far), one text block,
 * message_delta with the cumulative output tokens, message_stop. A gateway must take output tokens from
 * message_delta, not add the two.
 */
export function anthropicMessageStream(body: Json, label: string, override?: UsageOverride): SseEvent[] {
  const whole = anthropicMessage(body, label, override);
  const usage = whole.usage as { input_tokens: number; output_tokens: number };
  const text = ((whole.content as Json[])[0]?.text as string) ?? '';
  const event = (type: string, payload: Json): SseEvent => ({ event: type, data: JSON.stringify({ type, ...payload }) });
  const events = [
    event('message_start', { message: { ...whole, content: [], stop_reason: null, usage: { input_tokens: usage.input_tokens, output_tokens: Math.min(1, usage.output_tokens) } } }),
    event('content_block_start', { index: 0, content_block: { type: 'text', text: '' } }),
    event('ping', {}),
  ];
  text.split(' ').filter(Boolean).forEach((word, i) => events.push(event('content_block_delta', { index: 0, delta: { type: 'text_delta', text: i === 0 ? word : ` ${word}` } })));
  events.push(
    event('content_block_stop', { index: 0 }),
    event('message_delta', { delta: { stop_reason: whole.stop_reason, stop_sequence: null }, usage: { output_tokens: usage.output_tokens } }),
    event('message_stop', {}),
  );
  return events;
}

const openaiErrorKinds: Record<number, [string, string | null]> = {
  400: ['invalid_request_error', null],
  401: ['invalid_request_error', 'invalid_api_key'],
  403: ['invalid_request_error', 'unsupported_country_region_territory'],
  404: ['invalid_request_error', 'model_not_found'],
  429: ['requests', 'rate_limit_exceeded'],
};

/** An error body in OpenAI's shape, `{"error": {message, type, param, code}}`. */
export function openaiError(status: number, message: string, code?: string): Json {
  const [type, defaultCode] = openaiErrorKinds[status] ?? [status >= 500 ? 'server_error' : 'invalid_request_error', null];
  return { error: { message, type, param: null, code: code ?? defaultCode } };
}

const anthropicErrorTypes: Record<number, string> = {
  400: 'invalid_request_error',
  401: 'authentication_error',
  403: 'permission_error',
  404: 'not_found_error',
  413: 'request_too_large',
  429: 'rate_limit_error',
  529: 'overloaded_error',
};

/** An error body in Anthropic's shape, `{"type": "error", "error": {type, message}}`. */
export function anthropicError(status: number, message: string): Json {
  return { type: 'error', error: { type: anthropicErrorTypes[status] ?? 'api_error', message } };
}
