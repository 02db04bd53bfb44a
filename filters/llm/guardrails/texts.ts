/**
 * Where the texts a guardrail judges sit in the API's bodies, each as a slot that can be read and rewritten in
 * place (masking changes the value and the body is serialised again):
 *  - requests: chat and Anthropic `messages[].content` (a string, or the `text` of its parts), Anthropic's
 *    `system`, completions' `prompt` and embeddings' `input` (a string or a list of strings; token arrays
 *    carry no text);
 *  - JSON answers: `choices[].message.content` (chat), `choices[].text` (completions), Anthropic `content[].text`;
 *  - stream events: `choices[].delta.content`, `choices[].text`, Anthropic `delta.text`, keyed by choice.
 */

type Json = Record<string, unknown>;

const isRecord = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);

export interface TextSlot {
  readonly text: string;
  /** The role of the message the text belongs to (chat, messages); undefined for prompts and inputs. */
  readonly role: string | undefined;
  set(text: string): void;
}

function slot(holder: Json | unknown[], key: string | number, role: string | undefined): TextSlot | undefined {
  const value = (holder as Record<string | number, unknown>)[key];
  if (typeof value !== 'string') return undefined;
  return {
    text: value,
    role,
    set: (text) => {
      (holder as Record<string | number, unknown>)[key] = text;
    },
  };
}

/** The text slots of a content value: a string, or a list of parts with `text`. */
function contentSlots(holder: Json, key: string, role: string | undefined, out: TextSlot[]): void {
  const content = holder[key];
  if (typeof content === 'string') {
    const s = slot(holder, key, role);
    if (s) out.push(s);
  } else if (Array.isArray(content)) {
    for (const part of content) {
      if (!isRecord(part)) continue;
      const s = slot(part, 'text', role);
      if (s) out.push(s);
    }
  }
}

/** The texts of a parsed request (`body` is changed in place by the slots' set). */
export function requestTexts(body: Json): TextSlot[] {
  const out: TextSlot[] = [];
  if (Array.isArray(body.messages)) {
    for (const m of body.messages) if (isRecord(m)) contentSlots(m, 'content', typeof m.role === 'string' ? m.role : undefined, out);
  }
  if (body.system !== undefined) contentSlots(body, 'system', 'system', out);
  for (const key of ['prompt', 'input'] as const) {
    const v = body[key];
    if (typeof v === 'string') {
      const s = slot(body, key, undefined);
      if (s) out.push(s);
    } else if (Array.isArray(v)) {
      v.forEach((_, i) => {
        const s = slot(v, i, undefined);
        if (s) out.push(s);
      });
    }
  }
  return out;
}

/** The texts of a parsed JSON answer. */
export function answerTexts(body: Json): TextSlot[] {
  const out: TextSlot[] = [];
  if (Array.isArray(body.choices)) {
    for (const c of body.choices) {
      if (!isRecord(c)) continue;
      if (isRecord(c.message)) contentSlots(c.message, 'content', 'assistant', out);
      const s = slot(c, 'text', 'assistant');
      if (s) out.push(s);
    }
  }
  if (body.type === 'message' && Array.isArray(body.content)) contentSlots(body, 'content', 'assistant', out);
  return out;
}

/** The text deltas of one stream event's data, by choice index (Anthropic: by content block). */
export function eventDeltas(data: string): { choice: number; text: string }[] | undefined {
  if (data === '[DONE]') return [];
  let event: unknown;
  try {
    event = JSON.parse(data);
  } catch {
    return undefined;
  }
  if (!isRecord(event)) return undefined;
  const out: { choice: number; text: string }[] = [];
  if (Array.isArray(event.choices)) {
    for (const c of event.choices) {
      if (!isRecord(c)) continue;
      const choice = typeof c.index === 'number' ? c.index : 0;
      if (isRecord(c.delta) && typeof c.delta.content === 'string') out.push({ choice, text: c.delta.content });
      if (typeof c.text === 'string') out.push({ choice, text: c.text });
    }
  }
  if (event.type === 'content_block_delta' && isRecord(event.delta) && typeof event.delta.text === 'string') {
    out.push({ choice: typeof event.index === 'number' ? event.index : 0, text: event.delta.text });
  }
  return out;
}
