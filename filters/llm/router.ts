import { Header, LLM_ENDPOINT_PATHS, type ApiKind, type LlmEndpoint } from '../../src/contract/filter-wire.js';
import type { AuthzDeny } from '../authz/decision.js';
import { ruleAdmits, type Caller } from '../authz/access.js';
import type { AuditLog } from '../service/audit.js';
import type { FilterEngine } from '../service/engine.js';
import { CONTINUE, errorReply, jsonReply, type LlmAnswer } from './answers.js';
import type { LlmCatalog, LlmModel } from './catalog.js';
import type { Cooldowns } from './cooldown.js';
import { promptRequests, renderPrompt } from './prompt.js';

/**
 * The LLM router's work on one request of the OpenAI API: GET /v1/models answered from the policy (only the
 * models the caller may use), and for the endpoints the body's `model` read and resolved. It never decides
 * access: it names the model (x-flowgate-llm-model), turns `@alias` and `/VERSION` into the pin headers that
 * ext_authz judges strictly on the model's own routes, and writes the upstream's model name into the body.
 * An unknown model is a 404 that lists nothing.
 */

type Json = Record<string, unknown>;

const NOT_FOUND = (shown: string): string => `The model '${shown}' does not exist or you do not have access to it.`;

/** At most this much of a caller's own text is echoed in an error message. */
const ECHO_CHARS = 128;

export class RouterRun {
  /** True once the router has nothing more to see of this request (it never reads answers). */
  finished = false;
  /** The request's headers (prompt variables may come from them). */
  private headers: Readonly<Record<string, string>> = {};

  /** `endpoint`: as the entry route names it (the path in the headers says the same). */
  constructor(
    private readonly engine: FilterEngine,
    private readonly catalog: LlmCatalog,
    private readonly cooldowns: Cooldowns,
    private readonly api: ApiKind,
    private endpoint?: LlmEndpoint,
    private readonly audit?: AuditLog,
  ) {}

  async requestHeaders(headers: Readonly<Record<string, string>>, endOfStream: boolean): Promise<LlmAnswer> {
    this.headers = headers;
    const method = headers[':method'] ?? '';
    const path = headers[':path'] ?? '';
    const target = this.catalog.endpointOf(path);
    if (!target) return errorReply(this.api, 404, 'unknown_url', 'unknown request URL');
    if ('models' in target || 'model' in target) {
      if (method !== 'GET') return errorReply(this.api, 405, 'method_not_allowed', `${path.split('?')[0] ?? ''} takes GET`, { allow: 'GET' });
      return this.listModels(headers, 'model' in target ? target.model : undefined);
    }
    if (method !== 'POST') return errorReply(this.api, 405, 'method_not_allowed', `${LLM_ENDPOINT_PATHS[target.endpoint]} takes POST`, { allow: 'POST' });
    if (endOfStream) return errorReply(this.api, 400, 'invalid_request', 'the request has no body; send a JSON object with a model');
    this.endpoint = target.endpoint;
    return CONTINUE;
  }

  requestBody(body: Buffer): LlmAnswer {
    this.finished = true;
    const endpoint = this.endpoint;
    if (!endpoint) return errorReply(this.api, 400, 'invalid_request', 'unexpected request body');
    let request: unknown;
    try {
      request = JSON.parse(body.toString('utf8'));
    } catch {
      return errorReply(this.api, 400, 'invalid_json', 'the request body is not valid JSON');
    }
    if (typeof request !== 'object' || request === null || Array.isArray(request)) return errorReply(this.api, 400, 'invalid_request', 'the request body must be a JSON object');
    const json = request as Json;
    if (typeof json.model !== 'string' || json.model === '') return errorReply(this.api, 400, 'missing_model', 'you must give a model (the "model" field)');
    const shown = json.model.slice(0, ECHO_CHARS);
    const resolved = this.catalog.resolve(json.model);
    // A pin on a model that takes none names nothing, like an unknown name.
    if (!resolved || (resolved.pin && !resolved.rules.pinning)) return errorReply(this.api, 404, 'model_not_found', NOT_FOUND(shown));
    const { rules, pin } = resolved;
    if (!rules.llm.endpoints.includes(endpoint)) {
      return errorReply(this.api, 404, 'unsupported_endpoint', `the model '${shown}' is not served on ${LLM_ENDPOINT_PATHS[endpoint]}; it serves ${rules.llm.endpoints.map((e) => LLM_ENDPOINT_PATHS[e]).join(', ')}`);
    }
    const set: Record<string, string> = { [Header.llmModel]: rules.name };
    const append: Record<string, string> = {};
    if (pin) append['alias' in pin ? Header.pinAlias : Header.pinVersion] = 'alias' in pin ? pin.alias : pin.version;
    // Unpinned traffic of a model whose upstream asked for time starts at its fallback chain. (A request
    // pinned by its headers matches the model's pin routes before the cooldown route.)
    if (rules.llm.fallback && !pin && this.cooldowns.active(rules.name)) set[Header.llmCooldown] = '1';
    let out: Json = json;
    const prompt = rules.llm.prompt;
    if (prompt && endpoint === 'chat') {
      const rendered = renderPrompt(prompt, json, this.headers);
      const requestId = this.headers['x-request-id'];
      if (!rendered.ok) {
        this.audit?.write({ kind: 'prompt', model: rules.name, decision: 'deny', code: rendered.code, status: rendered.status, requestId });
        return errorReply(this.api, rendered.status, rendered.code, rendered.message);
      }
      out = rendered.body;
      if (rendered.version !== undefined && prompt.template) {
        set[Header.promptVersion] = rendered.version;
        promptRequests.inc({ model: rules.name, prompt: prompt.template.name, prompt_version: prompt.template.version });
        this.audit?.write({ kind: 'prompt', model: rules.name, decision: 'allow', prompt: rendered.version, requestId });
      }
    }
    const changes: Json = out.model !== rules.llm.upstreamModel ? { model: rules.llm.upstreamModel } : {};
    // A stream reports usage only when asked: ask for it whenever the model's answers are read for usage, and
    // tell the route's ext_proc to strip the usage chunk if the caller did not ask for it.
    if (out.stream === true && STREAMS_USAGE.has(endpoint) && this.engine.readsUsage(rules.name) && !asksUsage(out)) {
      changes.stream_options = { ...(isObject(out.stream_options) ? out.stream_options : {}), include_usage: true };
      set[Header.llmUsageAdded] = '1';
    }
    let rewritten: Buffer | undefined;
    if (out !== json || Object.keys(changes).length > 0) {
      rewritten = Buffer.from(JSON.stringify({ ...out, ...changes }), 'utf8');
      set['content-length'] = String(rewritten.length);
    }
    return { kind: 'continue', headers: { set, append }, ...(rewritten && { body: rewritten }), clearRouteCache: true };
  }

  /** GET /v1/models (or one model): the LLM models with a live version that the caller may call. */
  private async listModels(headers: Readonly<Record<string, string>>, one: string | undefined): Promise<LlmAnswer> {
    const who = await this.engine.authorizer.identifyCaller(headers);
    if ('deny' in who) return this.unauthorized(who.deny);
    const entries = this.catalog
      .models()
      .filter((m) => m.live.length > 0 && mayCall(m, who.caller))
      .flatMap((m) => m.llm.names.map((id) => ({ id, object: 'model', created: m.llm.created, owned_by: m.llm.ownedBy })));
    if (one === undefined) return jsonReply({ object: 'list', data: entries });
    const entry = entries.find((e) => e.id === one);
    return entry ? jsonReply(entry) : errorReply(this.api, 404, 'model_not_found', NOT_FOUND(one.slice(0, ECHO_CHARS)));
  }

  private unauthorized(deny: AuthzDeny): LlmAnswer {
    const challenge = deny.headers['www-authenticate'];
    return errorReply(this.api, deny.status, deny.code, deny.message, challenge ? { 'www-authenticate': challenge } : {});
  }
}

/** The endpoints whose streams report usage only with `stream_options.include_usage` (Anthropic's always do). */
const STREAMS_USAGE: ReadonlySet<LlmEndpoint> = new Set(['chat', 'completions']);

const isObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Whether the caller asked a stream for its usage chunk. */
function asksUsage(request: Json): boolean {
  return isObject(request.stream_options) && request.stream_options.include_usage === true;
}

/** Whether a caller may call a model at all (its version rules only matter for pins, judged by ext_authz). */
function mayCall(model: LlmModel, caller: Caller | undefined): boolean {
  if (!model.access) return true;
  return caller !== undefined && ruleAdmits(model.access, caller);
}

