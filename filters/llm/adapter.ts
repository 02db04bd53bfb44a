import { ENDPOINT_METADATA, Header, LLM_ENDPOINT_PATHS, llmRouteEndpoint, type ApiKind, type LlmEndpoint } from '../../src/contract/filter-wire.js';
import { CONTINUE, errorReply, type HeaderEdits, type LlmAnswer } from './answers.js';
import type { LlmCatalog, LlmModel } from './catalog.js';
import type { Cooldowns } from './cooldown.js';
import { retryAfterMs } from './cooldown.js';
import { cacheKey, cachePlan, notHit, type AnswerCaches, type CachePlan } from './cache.js';
import { credentialSource, type Credentials } from './credentials.js';
import { chatAsk, chatCompletionEvents, fromMlflowChat, mlflowFailure, toMlflowChat, type ChatAsk } from './mlflow-chat.js';

/**
 * The LLM adapter's work on one attempt of a request (it runs in the upstream filters, once per try, on the
 * endpoint Envoy picked): fit the request to that model version's upstream and the answer to the caller.
 *
 * Envoy hands every attempt of one request the same header map, already changed by the attempts before (a
 * fallback after a provider sees that provider's key and path). So each attempt sets every header it owns
 * from scratch, removes every credential it did not set, and reads the endpoint from the route's name,
 * never from the path.
 */

type Json = Record<string, unknown>;

/** Every header that can carry an upstream key: removed on each attempt unless this attempt's upstream needs it. */
const UPSTREAM_KEY_HEADERS = ['authorization', 'x-api-key', 'api-key'] as const;

const PASS_THROUGH = { request_header_mode: 'SEND', request_body_mode: 'BUFFERED', request_trailer_mode: 'SKIP', response_trailer_mode: 'SKIP' } as const;

/** The model and version of the endpoint Envoy picked, from the `xds.upstream_host_metadata` attribute. */
export function endpointTarget(metadata: string | undefined): { model: string; version: string } | undefined {
  if (!metadata) return undefined;
  const text = metadata.trim();
  if (text.startsWith('{')) {
    try {
      const parsed = JSON.parse(text) as { filter_metadata?: Record<string, Record<string, unknown>> };
      const ns = parsed.filter_metadata?.[ENDPOINT_METADATA.namespace];
      const model = ns?.[ENDPOINT_METADATA.model];
      const version = ns?.[ENDPOINT_METADATA.version];
      return typeof model === 'string' && typeof version === 'string' ? { model, version } : undefined;
    } catch {
      return undefined;
    }
  }
  // Envoy renders the Metadata message in protobuf text format.
  const ns = text.indexOf(`key: "${ENDPOINT_METADATA.namespace}"`);
  if (ns < 0) return undefined;
  const field = (key: string): string | undefined => new RegExp(`key: "${key}" value \\{ string_value: "([^"\\\\]*)" \\}`).exec(text.slice(ns))?.[1];
  const model = field(ENDPOINT_METADATA.model);
  const version = field(ENDPOINT_METADATA.version);
  return model !== undefined && version !== undefined ? { model, version } : undefined;
}

export class AdapterRun {
  private rules: LlmModel | undefined;
  private version = '';
  private endpoint: LlmEndpoint = 'chat';
  private api: ApiKind = 'openai';
  private ask: ChatAsk | undefined;
  private status: number | undefined;
  /** The phases after the request this attempt asked Envoy for. */
  private wants: 'nothing' | 'headers' | 'body' = 'body';
  /** True once Envoy will send this attempt nothing more. */
  finished = false;
  /** The caller's consumer and Cache-Control, read before the headers are fitted to the upstream. */
  private caller: { consumer: string | undefined; cacheControl: string | undefined; prompt: string | undefined } = { consumer: undefined, cacheControl: undefined, prompt: undefined };
  /** This attempt's cache work: the plan and key once the request body was read. */
  private cache: { plan: CachePlan; key: string } | undefined;
  /** Whether this attempt buffers the answer to store it. */
  private storing = false;
  /** Whether the model the caller asked for caches (its answers' x-flowgate-cache is this adapter's to set). */
  private requestedCaches = false;

  constructor(
    private readonly catalog: LlmCatalog,
    private readonly cooldowns: Cooldowns,
    private readonly credentials: Credentials,
    private readonly answers?: AnswerCaches,
    private readonly counted: (model: string, result: 'hit' | 'miss' | 'bypass') => void = () => undefined,
  ) {}

  requestHeaders(headers: Readonly<Record<string, string>>, attributes: Readonly<Record<string, string>>): LlmAnswer {
    const endpoint = llmRouteEndpoint(attributes['xds.route_name'] ?? '');
    if (endpoint) this.endpoint = endpoint;
    this.api = this.endpoint === 'messages' ? 'anthropic' : 'openai';
    const target = endpointTarget(attributes['xds.upstream_host_metadata']);
    const rules = target && this.catalog.model(target.model);
    if (!target || !rules || !endpoint) return errorReply(this.api, 503, 'adapter_unavailable', 'the gateway cannot tell which model version this attempt reached');
    this.rules = rules;
    this.version = target.version;
    this.caller = { consumer: headers[Header.consumer], cacheControl: headers['cache-control'], prompt: headers[Header.promptVersion] };
    // The model asked for (a fallback attempt reaches another): when it caches, every attempt owns the header.
    this.requestedCaches = this.catalog.model(headers[Header.llmModel] ?? '')?.llm.cache !== undefined;
    const cached = rules.llm.cache !== undefined || this.requestedCaches;
    const edits = this.upstreamHeaders(rules, headers);
    if ('reply' in edits) return edits.reply;
    const mlflow = rules.llm.upstream === 'mlflow';
    this.wants = mlflow ? 'body' : rules.llm.fallback || cached ? 'headers' : 'nothing';
    return {
      kind: 'continue',
      headers: edits,
      modeOverride: {
        ...PASS_THROUGH,
        // A 429's Retry-After starts a cooldown, for models whose requests can go elsewhere meanwhile.
        // A cached model's answers are marked (hit, miss, bypass), and the cacheable ones stored.
        response_header_mode: mlflow || rules.llm.fallback || cached ? 'SEND' : 'SKIP',
        // Only MLflow's answers are rewritten; anything else (a stream above all) passes untouched.
        response_body_mode: mlflow ? 'BUFFERED' : 'NONE',
      },
    };
  }

  async requestBody(body: Buffer): Promise<LlmAnswer> {
    const rules = this.rules;
    this.finished = this.wants === 'nothing';
    if (!rules) return CONTINUE;
    let request: Json;
    try {
      const parsed: unknown = JSON.parse(body.toString('utf8'));
      if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new Error('not an object');
      request = parsed as Json;
    } catch {
      return errorReply(this.api, 400, 'invalid_json', 'the request body is not a JSON object');
    }
    const hit = await this.lookup(rules, request);
    if (hit) return hit;
    let out: Json;
    if (rules.llm.upstream === 'mlflow') {
      this.ask = chatAsk(request, `${rules.name}/${this.version}`);
      const converted = toMlflowChat(request);
      if (!converted.ok) return errorReply(this.api, 400, 'unsupported_request', converted.message);
      out = converted.body;
    } else {
      out = { ...request, model: rules.llm.versions.find((v) => v.version === this.version)?.upstreamModel ?? rules.llm.upstreamModel };
    }
    const bytes = Buffer.from(JSON.stringify(out), 'utf8');
    return { kind: 'continue', headers: { set: { 'content-length': String(bytes.length) } }, body: bytes };
  }

  responseHeaders(status: number | undefined, headers: Readonly<Record<string, string>>, endOfStream: boolean): LlmAnswer {
    this.status = status;
    const rules = this.rules;
    const cache = this.cache;
    // A 200 JSON answer of a cacheable request is buffered to be stored (a stream passes untouched, unstored).
    this.storing = cache?.plan.store === true && status === 200 && !endOfStream && (rules?.llm.upstream === 'mlflow' || (headers['content-type'] ?? '').includes('application/json'));
    const bufferNow = this.storing && rules?.llm.upstream !== 'mlflow';
    this.finished = (this.wants === 'headers' && !this.storing) || endOfStream;
    // An upstream's own x-flowgate-cache never reaches the caller (or the token quotas) as if it were ours.
    const marked: HeaderEdits | undefined = rules?.llm.cache
      ? { set: { [Header.llmCache]: cache ? notHit(cache.plan) : 'bypass' } }
      : this.requestedCaches
        ? { remove: [Header.llmCache] }
        : undefined;
    if (rules?.llm.fallback && status === 429) {
      const ms = retryAfterMs(headers['retry-after']);
      if (ms !== undefined && ms > 0) this.cooldowns.start(rules.name, ms, rules.llm.cooldownMaxMs);
    }
    // An MLflow answer without a body has nothing to convert: only its status is mapped.
    if (rules?.llm.upstream === 'mlflow' && endOfStream && status !== 200) {
      const failure = mlflowFailure(status ?? 502, Buffer.alloc(0));
      return { kind: 'continue', headers: { ...marked, set: { ':status': String(failure.status), ...marked?.set } } };
    }
    if (bufferNow) return { kind: 'continue', ...(marked && { headers: marked }), modeOverride: { response_body_mode: 'BUFFERED', response_trailer_mode: 'SKIP' } };
    return marked ? { kind: 'continue', headers: marked } : CONTINUE;
  }

  /** The whole buffered answer: MLflow's converted (or its failure mapped); a cacheable 200 stored. */
  async responseBody(body: Buffer): Promise<LlmAnswer> {
    this.finished = true;
    const rules = this.rules;
    const ask = this.ask;
    if (rules?.llm.upstream !== 'mlflow' || !ask) {
      if (rules && this.storing) await this.store(rules, body.toString('utf8'));
      return CONTINUE;
    }
    const rewrite = (status: number, contentType: string, text: string): LlmAnswer => {
      const bytes = Buffer.from(text, 'utf8');
      return {
        kind: 'continue',
        headers: { set: { ':status': String(status), 'content-type': contentType, 'content-length': String(bytes.length), ...(contentType.startsWith('text/event-stream') && { 'cache-control': 'no-cache' }) } },
        body: bytes,
      };
    };
    if (this.status !== 200) {
      const failure = mlflowFailure(this.status ?? 502, body);
      return rewrite(failure.status, 'application/json', errorBodyText(this.api, failure.status, failure.code, failure.message));
    }
    let answer: unknown;
    try {
      answer = JSON.parse(body.toString('utf8'));
    } catch {
      answer = undefined;
    }
    const completion = fromMlflowChat(answer, ask);
    if (!completion) return rewrite(502, 'application/json', errorBodyText(this.api, 502, 'bad_upstream_answer', 'the model server answered with something that is not a chat completion'));
    if (this.storing) await this.store(rules, JSON.stringify(completion));
    return ask.stream ? rewrite(200, 'text/event-stream; charset=utf-8', chatCompletionEvents(completion, ask)) : rewrite(200, 'application/json', `${JSON.stringify(completion)}\n`);
  }

  /** The cached answer to this request, as the caller asked for it (JSON or a replayed stream), or undefined. */
  private async lookup(rules: LlmModel, request: Json): Promise<LlmAnswer | undefined> {
    const policy = rules.llm.cache;
    if (!policy || !this.answers) return undefined;
    const plan = this.answers.available(policy) ? cachePlan(policy, this.endpoint, request, this.caller.cacheControl) : { lookup: false, store: false };
    const key = cacheKey({ model: rules.name, version: this.version, endpoint: this.endpoint, scope: policy.scope, consumer: this.caller.consumer, prompt: this.caller.prompt, request });
    this.cache = { plan, key };
    const found = plan.lookup ? await this.answers.get(rules.name, policy, rules.live.map((l) => l.version), key) : undefined;
    const replayed = found && replay(found.body, request);
    this.counted(rules.name, replayed ? 'hit' : notHit(plan));
    if (!replayed) return undefined;
    this.finished = true;
    return { kind: 'reply', status: 200, body: replayed.body, headers: { 'content-type': replayed.contentType, [Header.llmCache]: 'hit', ...(replayed.contentType.startsWith('text/event-stream') && { 'cache-control': 'no-cache' }) } };
  }

  /** Keeps a 200 answer (a JSON object) for the requests with this attempt's key. */
  private async store(rules: LlmModel, text: string): Promise<void> {
    const policy = rules.llm.cache;
    if (!policy || !this.answers || !this.cache?.plan.store) return;
    try {
      const parsed: unknown = JSON.parse(text);
      if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) return;
    } catch {
      return;
    }
    await this.answers.set(rules.name, policy, rules.live.map((l) => l.version), this.cache.key, { version: this.version, body: text.endsWith('\n') ? text : `${text}\n` });
  }

  /** Path, authority, key and content type for this attempt's upstream, set whatever the earlier attempts left. */
  private upstreamHeaders(rules: LlmModel, request: Readonly<Record<string, string>>): HeaderEdits | { reply: LlmAnswer } {
    const path = LLM_ENDPOINT_PATHS[this.endpoint];
    const remove = new Set<string>(UPSTREAM_KEY_HEADERS);
    const set: Record<string, string> = { 'content-type': 'application/json' };
    const provider = rules.llm.provider;
    if (rules.llm.upstream === 'mlflow') {
      set[':path'] = '/invocations';
    } else if (!provider) {
      set[':path'] = `/v1${path}`;
    } else {
      set[':authority'] = provider.authority;
      // Who the caller is stays inside: an external provider learns nothing of the gateway's consumers.
      remove.add(Header.consumer);
      const key = provider.credential && this.credentials.read(provider.credential);
      if (provider.credential && key === undefined) {
        return { reply: errorReply(this.api, 503, 'provider_credential_unavailable', `the gateway has no key for model '${rules.name}' (${credentialSource(provider.credential)} is empty or missing)`) };
      }
      if (provider.api === 'azure') {
        const deployment = encodeURIComponent(rules.llm.upstreamModel);
        set[':path'] = `${provider.basePath}/openai/deployments/${deployment}${path}?api-version=${encodeURIComponent(provider.apiVersion ?? '')}`;
        if (key !== undefined) set['api-key'] = key;
      } else if (provider.api === 'anthropic' && this.endpoint === 'messages') {
        set[':path'] = `${provider.basePath}${path}`;
        if (key !== undefined) set['x-api-key'] = key;
        if (request['anthropic-version'] === undefined && provider.apiVersion !== undefined) set['anthropic-version'] = provider.apiVersion;
      } else {
        set[':path'] = `${provider.basePath}${path}`;
        if (key !== undefined) set.authorization = `Bearer ${key}`;
      }
      for (const h of Object.keys(set)) remove.delete(h);
    }
    return { set, remove: [...remove, 'content-length'] };
  }
}

function errorBodyText(api: ApiKind, status: number, code: string, message: string): string {
  const reply = errorReply(api, status, code, message);
  return reply.kind === 'reply' ? reply.body : '';
}

/** A stored answer as the request wants it: the JSON itself, or (a chat stream) its chat.completion.chunk events; undefined if unreadable. */
export function replay(stored: string, request: Json): { contentType: string; body: string } | undefined {
  if (request.stream !== true) return { contentType: 'application/json', body: stored };
  let completion: unknown;
  try {
    completion = JSON.parse(stored);
  } catch {
    return undefined;
  }
  if (typeof completion !== 'object' || completion === null || !Array.isArray((completion as Json).choices)) return undefined;
  const model = (completion as Json).model;
  const ask = chatAsk(request, typeof model === 'string' ? model : '');
  return { contentType: 'text/event-stream; charset=utf-8', body: chatCompletionEvents(completion as Json, ask) };
}
