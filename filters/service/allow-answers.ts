import { Lru } from '../authz/lru.js';
import { messageType } from '../../src/proto/root.js';
import { SELF_ENCODED, setHeaders } from './grpc.js';

/**
 * Check's allow answers, built and encoded once per (model, consumer, routed version: the headers the
 * decision sets) under one policy version. What an allow tells Envoy to do to the request (set the consumer and routed version, remove the
 * credentials and what the client may not name) depends on nothing else, so its encoded `ok_response` part
 * is kept; the headers that change per request (the RateLimit and quota figures for the client) are encoded
 * per call and appended. Protobuf fields may come in any order and a message's fields simply concatenate,
 * and these come in field-number order (2, 5, then 6), so the bytes are exactly those of the whole encode
 * (test/filters/service/allow-answers.test.ts).
 *
 * The cache belongs to one FilterEngine, so a new policy starts with none. Its key is built from the
 * authorization decision (the consumer the credential proved, the version the rules routed to), never from
 * request headers, so a forged `x-flowgate-consumer` cannot reach another consumer's answer. A sticky model's
 * answer carries a per-request hash and is never cached. Bounded: least recently used beyond ALLOW_ANSWERS.
 */

export const ALLOW_ANSWERS = 10_000;

const okType = messageType('envoy.service.auth.v3.OkHttpResponse');
/** CheckResponse.status = { code: 0 } (field 1), as protobufjs writes it, then the ok_response tag (field 3). */
const STATUS_OK = Buffer.from([0x0a, 0x02, 0x08, 0x00]);
const OK_RESPONSE_TAG = 0x1a;
const OK_STATUS = Object.freeze({ code: 0 });
const NONE: readonly object[] = Object.freeze([]);

/** A HeaderValueOption as setHeaders builds it. */
interface SetHeader {
  readonly header: { readonly key: string; readonly value: string };
  readonly append_action: number;
}

/** Bytes of a varint (lengths and the append action here: at most 32 bits). */
function varintLength(value: number): number {
  let n = 1;
  while (value > 0x7f) {
    value >>>= 7;
    n += 1;
  }
  return n;
}

function writeVarint(out: Buffer, at: number, value: number): number {
  while (value > 0x7f) {
    out[at++] = (value & 0x7f) | 0x80;
    value >>>= 7;
  }
  out[at++] = value;
  return at;
}

/**
 * OkHttpResponse.response_headers_to_add (field 6), encoded as protobufjs encodes setHeaders' options:
 * HeaderValueOption { header (1): HeaderValue { key (1), value (2) }, append_action (3) }.
 */
function encodeAdded(added: readonly SetHeader[]): Buffer {
  const sizes: number[] = [];
  let total = 0;
  for (const option of added) {
    const key = Buffer.byteLength(option.header.key);
    const value = Buffer.byteLength(option.header.value);
    const header = 1 + varintLength(key) + key + 1 + varintLength(value) + value;
    const body = 1 + varintLength(header) + header + 1 + varintLength(option.append_action);
    sizes.push(key, value, header, body);
    total += 1 + varintLength(body) + body;
  }
  const out = Buffer.allocUnsafe(total);
  let at = 0;
  for (let i = 0; i < added.length; i++) {
    const option = added[i] as SetHeader;
    const [key, value, header, body] = [sizes[4 * i], sizes[4 * i + 1], sizes[4 * i + 2], sizes[4 * i + 3]] as [number, number, number, number];
    out[at++] = 0x32;
    at = writeVarint(out, at, body);
    out[at++] = 0x0a;
    at = writeVarint(out, at, header);
    out[at++] = 0x0a;
    at = writeVarint(out, at, key);
    at += out.write(option.header.key, at, 'utf8');
    out[at++] = 0x12;
    at = writeVarint(out, at, value);
    at += out.write(option.header.value, at, 'utf8');
    out[at++] = 0x18;
    at = writeVarint(out, at, option.append_action);
  }
  return out;
}

function varint(value: number): Buffer {
  const out: number[] = [];
  while (value > 0x7f) {
    out.push((value & 0x7f) | 0x80);
    value >>>= 7;
  }
  out.push(value);
  return Buffer.from(out);
}

/** The part of an allow that does not change per request, encoded. */
class AllowPart {
  readonly headers: readonly object[];
  readonly removed: readonly string[];
  readonly bytes: Buffer;
  /** The whole answer when the request adds no response headers: shared, immutable. */
  readonly bare: AllowAnswer;

  constructor(toSet: Readonly<Record<string, string>>, toRemove: readonly string[]) {
    this.headers = Object.freeze(setHeaders(toSet).map((h) => Object.freeze(h)));
    this.removed = Object.freeze([...toRemove]);
    this.bytes = Buffer.from(okType.encode({ headers: this.headers, headers_to_remove: this.removed }).finish());
    this.bare = new AllowAnswer(this, NONE);
    Object.freeze(this.bare);
  }
}

/**
 * An allow CheckResponse: reads like the plain answer (`status`, `ok_response`), and encodes from its cached
 * part.
 */
export class AllowAnswer {
  readonly status = OK_STATUS;
  readonly ok_response: { readonly headers: readonly object[]; readonly headers_to_remove: readonly string[]; readonly response_headers_to_add: readonly object[] };
  readonly #part: AllowPart;

  constructor(part: AllowPart, responseHeaders: readonly object[]) {
    this.#part = part;
    this.ok_response = { headers: part.headers, headers_to_remove: part.removed, response_headers_to_add: responseHeaders };
  }

  /** The encoded CheckResponse (the codec calls it: filters/service/grpc.ts). */
  [SELF_ENCODED](): Buffer {
    const added = this.ok_response.response_headers_to_add;
    const tail = added.length === 0 ? undefined : encodeAdded(added as readonly SetHeader[]);
    const ok = this.#part.bytes;
    const length = ok.length + (tail?.length ?? 0);
    const prefix = varint(length);
    const out = Buffer.allocUnsafe(STATUS_OK.length + 1 + prefix.length + length);
    let at = STATUS_OK.copy(out, 0);
    out[at++] = OK_RESPONSE_TAG;
    at += prefix.copy(out, at);
    at += ok.copy(out, at);
    if (tail) out.set(tail, at);
    return out;
  }
}

/** One policy version's allow answers. */
export class AllowAnswers {
  private readonly parts: Lru<string, AllowPart>;

  constructor(capacity = ALLOW_ANSWERS) {
    this.parts = new Lru(capacity);
  }

  get size(): number {
    return this.parts.size;
  }

  /**
   * The allow for `model` that sets `toSet` (the decision's: the proven consumer, the routed version) and
   * removes what `toRemove` gives when it is not cached (a function of the model and of which headers are
   * set, under one policy). `responseHeaders`: what this request adds to the client's answer.
   */
  answer(model: string, toSet: Readonly<Record<string, string>>, toRemove: () => readonly string[], responseHeaders: Readonly<Record<string, string>>): AllowAnswer {
    // Length-prefixed, so no name or value can run into the next.
    let key = `${model.length}:${model}`;
    for (const name in toSet) {
      const value = toSet[name] as string;
      key += `|${name.length}:${name}${value.length}:${value}`;
    }
    let part = this.parts.get(key);
    if (part === undefined) {
      part = new AllowPart(toSet, toRemove());
      this.parts.set(key, part);
    }
    let any = false;
    for (const _ in responseHeaders) {
      any = true;
      break;
    }
    return any ? new AllowAnswer(part, setHeaders(responseHeaders)) : part.bare;
  }
}
