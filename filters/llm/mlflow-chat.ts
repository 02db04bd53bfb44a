import { randomBytes } from 'node:crypto';

/**
 * OpenAI chat completions <-> the chat schema of an MLflow ChatModel served by `mlflow models serve` (the
 * differences are listed in examples/llm-model/README.md): the request loses the fields MLflow refuses or
 * drops (nulls, unknown message keys, content parts), keeps its limit (`max_completion_tokens` becomes
 * `max_tokens`), and the answer gains what OpenAI's clients expect. `mlflow models serve` never streams a
 * ChatModel, so a client's `stream: true` is answered with server-sent events made from the one JSON answer.
 * MLflow's error bodies repeat the whole request (masked fields included) and may carry a stack trace: only
 * their error code ever reaches the caller.
 */

type Json = Record<string, unknown>;

const isObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);

/** The chat params MLflow's ChatParams knows; anything else would be dropped by MLflow anyway. */
const PARAMS = ['temperature', 'max_tokens', 'stop', 'n', 'top_p', 'top_k', 'frequency_penalty', 'presence_penalty', 'custom_inputs'] as const;
/** The message keys MLflow's schema accepts (any other key, even null, is its 400). */
const MESSAGE_KEYS = ['role', 'content', 'name', 'refusal', 'tool_calls', 'tool_call_id'] as const;

export type Converted = { readonly ok: true; readonly body: Json } | { readonly ok: false; readonly message: string };

function contentOf(content: unknown, index: number): { ok: true; text: string | undefined } | { ok: false; message: string } {
  if (content === null || content === undefined) return { ok: true, text: undefined };
  if (typeof content === 'string') return { ok: true, text: content };
  if (!Array.isArray(content)) return { ok: false, message: `messages[${index}].content must be a string or a list of content parts` };
  const texts: string[] = [];
  for (const part of content) {
    if (!isObject(part) || part.type !== 'text' || typeof part.text !== 'string') {
      const type = isObject(part) && typeof part.type === 'string' ? part.type : typeof part;
      return { ok: false, message: `messages[${index}].content has a '${type}' part: this model (an MLflow ChatModel) reads text only` };
    }
    texts.push(part.text);
  }
  return { ok: true, text: texts.join('\n') };
}

function tool(t: unknown): unknown {
  if (!isObject(t) || !isObject(t.function)) return t;
  const { strict: _strict, ...fn } = t.function;
  // MLflow requires parameters, which OpenAI makes optional.
  return { ...t, function: { ...fn, parameters: isObject(fn.parameters) ? fn.parameters : { type: 'object', properties: {} } } };
}

/** The MLflow request for an OpenAI chat completions request, or why it cannot be one (a 400 for the caller). */
export function toMlflowChat(request: Json): Converted {
  if (!Array.isArray(request.messages) || request.messages.length === 0) return { ok: false, message: 'messages must be a non-empty list' };
  const messages: Json[] = [];
  for (const [i, m] of request.messages.entries()) {
    if (!isObject(m) || typeof m.role !== 'string') return { ok: false, message: `messages[${i}] must be an object with a role` };
    const out: Json = {};
    for (const key of MESSAGE_KEYS) if (m[key] !== null && m[key] !== undefined && key !== 'content') out[key] = m[key];
    const content = contentOf(m.content, i);
    if (!content.ok) return content;
    if (content.text !== undefined) out.content = content.text;
    messages.push(out);
  }
  const body: Json = { messages };
  for (const key of PARAMS) if (request[key] !== null && request[key] !== undefined) body[key] = request[key];
  if (body.max_tokens === undefined && typeof request.max_completion_tokens === 'number') body.max_tokens = request.max_completion_tokens;
  if (typeof body.stop === 'string') body.stop = [body.stop];
  if (Array.isArray(request.tools) && request.tools.length > 0) body.tools = request.tools.map(tool);
  return { ok: true, body };
}

/** What the caller asked of the answer's shape. */
export interface ChatAsk {
  readonly stream: boolean;
  readonly includeUsage: boolean;
  /** The answer's `model`: which model version served it (`support-bot/3`). */
  readonly model: string;
}

/** The caller's stream options from its OpenAI request. */
export function chatAsk(request: Json, model: string): ChatAsk {
  const options = isObject(request.stream_options) ? request.stream_options : {};
  return { stream: request.stream === true, includeUsage: request.stream === true && options.include_usage === true, model };
}

/** An OpenAI chat.completion from MLflow's answer, or undefined when it is not one. */
export function fromMlflowChat(answer: unknown, ask: ChatAsk, now: number = Date.now()): Json | undefined {
  if (!isObject(answer) || !Array.isArray(answer.choices)) return undefined;
  const choices = answer.choices.map((c: unknown, i) => {
    const choice = isObject(c) ? c : {};
    const message = isObject(choice.message) ? choice.message : {};
    return {
      index: typeof choice.index === 'number' ? choice.index : i,
      message: {
        role: typeof message.role === 'string' ? message.role : 'assistant',
        content: typeof message.content === 'string' ? message.content : null,
        refusal: typeof message.refusal === 'string' ? message.refusal : null,
        ...(Array.isArray(message.tool_calls) && { tool_calls: message.tool_calls }),
      },
      logprobs: null,
      finish_reason: typeof choice.finish_reason === 'string' ? choice.finish_reason : 'stop',
    };
  });
  return {
    id: typeof answer.id === 'string' && answer.id !== '' ? answer.id : `chatcmpl-${randomBytes(12).toString('hex')}`,
    object: 'chat.completion',
    created: typeof answer.created === 'number' ? answer.created : Math.floor(now / 1000),
    model: ask.model,
    choices,
    ...(isObject(answer.usage) && { usage: answer.usage }),
  };
}

/**
 * The server-sent events of `stream: true` for a whole chat.completion: per choice a first delta with the
 * role, one with the content (and tool calls), one with the finish reason; the usage chunk (empty choices)
 * only when the caller asked for it, and then `usage: null` on every other chunk, as OpenAI streams; `[DONE]`.
 */
export function chatCompletionEvents(completion: Json, ask: ChatAsk): string {
  const base = { id: completion.id, object: 'chat.completion.chunk', created: completion.created, model: completion.model };
  const chunks: Json[] = [];
  const chunk = (index: number, delta: Json, finish: unknown = null): Json => ({ ...base, choices: [{ index, delta, logprobs: null, finish_reason: finish }] });
  for (const c of completion.choices as Json[]) {
    const index = c.index as number;
    const message = c.message as Json;
    chunks.push(chunk(index, { role: message.role, content: '' }));
    if (typeof message.content === 'string' && message.content !== '') chunks.push(chunk(index, { content: message.content }));
    if (Array.isArray(message.tool_calls)) {
      chunks.push(chunk(index, { tool_calls: message.tool_calls.map((t: unknown, i) => (isObject(t) ? { index: i, ...t } : t)) }));
    }
    chunks.push(chunk(index, {}, c.finish_reason));
  }
  const events = chunks.map((c) => (ask.includeUsage ? { ...c, usage: null } : c));
  if (ask.includeUsage && isObject(completion.usage)) events.push({ ...base, choices: [], usage: completion.usage });
  return `${events.map((e) => `data: ${JSON.stringify(e)}\n\n`).join('')}data: [DONE]\n\n`;
}

/** An MLflow scoring-server failure as the caller sees it: a status and a code, never MLflow's message. */
export function mlflowFailure(status: number, body: Buffer): { status: number; code: string; message: string } {
  let errorCode: string | undefined;
  try {
    const parsed: unknown = JSON.parse(body.toString('utf8'));
    if (isObject(parsed) && typeof parsed.error_code === 'string' && /^[A-Z_]{1,64}$/.test(parsed.error_code)) errorCode = parsed.error_code;
  } catch {
    // MLflow's timeout answer is plain text; its status says enough.
  }
  if (status === 400 || status === 422) {
    return { status: 400, code: errorCode?.toLowerCase() ?? 'invalid_request', message: `the model refused the request${errorCode ? ` (MLflow ${errorCode})` : ''}; MLflow's message is not passed on because it repeats the request` };
  }
  if (status === 429) return { status: 429, code: 'rate_limit_exceeded', message: 'the model server is rate limiting requests' };
  if (status === 504) return { status: 504, code: 'upstream_timeout', message: 'the model did not answer in time' };
  return { status: 502, code: 'upstream_error', message: `the model server failed (HTTP ${status}${errorCode ? `, MLflow ${errorCode}` : ''})` };
}
