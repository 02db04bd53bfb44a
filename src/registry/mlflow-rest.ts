import { FlowgateError, errorMessage } from '../errors.js';

/**
 * The HTTP side of the MLflow REST API 2.0: the base URL, credentials, a timeout per request, and one typed
 * error for everything that can go wrong. Reads (MlflowClient) and writes (MlflowAdmin) both go through it.
 */

export interface MlflowClientOptions {
  /** http(s)://host:port[/prefix] of the MLflow tracking server. Credentials in it are moved to a Basic header. */
  readonly trackingUri: string;
  /** Sent as `Authorization: Bearer <token>`; wins over username/password. */
  readonly token?: string | undefined;
  readonly username?: string | undefined;
  readonly password?: string | undefined;
  /** Per request. Default 5000. */
  readonly timeoutMs?: number | undefined;
  /** max_results of each search page. Default 1000 (MLflow's ceiling for registered-model search). */
  readonly pageSize?: number | undefined;
}

/** The options MLflow's own clients read from the environment (MLFLOW_TRACKING_URI and its credentials). */
export function mlflowClientOptionsFromEnv(env: Readonly<Record<string, string | undefined>> = process.env): MlflowClientOptions {
  const trackingUri = env.MLFLOW_TRACKING_URI;
  if (trackingUri === undefined || trackingUri === '') {
    throw new FlowgateError('registry.no_tracking_uri', 'MLFLOW_TRACKING_URI is not set: point it at the MLflow tracking server, e.g. http://mlflow:5000');
  }
  const nonEmpty = (v: string | undefined): string | undefined => (v === '' ? undefined : v);
  return {
    trackingUri,
    token: nonEmpty(env.MLFLOW_TRACKING_TOKEN),
    username: nonEmpty(env.MLFLOW_TRACKING_USERNAME),
    password: nonEmpty(env.MLFLOW_TRACKING_PASSWORD),
  };
}

/** Why a call failed, from a bounded set (it is a metric label). */
export type MlflowFailure = 'unreachable' | 'timeout' | 'http_4xx' | 'http_5xx' | 'bad_response';

/** A failed MLflow call: why, the HTTP status and MLflow's own error_code when there was an answer. */
export class MlflowError extends FlowgateError {
  constructor(
    readonly failure: MlflowFailure,
    message: string,
    /** Method and URL (never credentials). */
    where: string,
    readonly status?: number,
    /** MLflow's error_code, e.g. RESOURCE_DOES_NOT_EXIST, INVALID_PARAMETER_VALUE. */
    readonly mlflowCode?: string,
    options?: { cause?: unknown },
  ) {
    super(`registry.${failure}`, message, where, options);
    this.name = 'MlflowError';
  }
}

/** True when `err` is MLflow saying the named model or version does not exist. */
export function isNotFound(err: unknown): boolean {
  return err instanceof MlflowError && (err.mlflowCode === 'RESOURCE_DOES_NOT_EXIST' || err.status === 404);
}

type Query = Readonly<Record<string, string | number | undefined>>;

export class MlflowRest {
  /** The tracking URI without credentials and without a trailing slash; safe to log. */
  readonly baseUrl: string;
  readonly timeoutMs: number;
  private readonly authorization: string | undefined;

  constructor(options: MlflowClientOptions) {
    let url: URL;
    try {
      url = new URL(options.trackingUri);
    } catch {
      throw new FlowgateError('registry.bad_tracking_uri', 'the MLflow tracking URI is not a URL: expected http(s)://host:port');
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') {
      throw new FlowgateError('registry.bad_tracking_uri', `the MLflow tracking URI must be http or https (got ${url.protocol.slice(0, -1)}:)`);
    }
    // fetch refuses URLs with credentials; MLflow's Python client sends them as Basic auth, so do the same.
    const username = options.username ?? (url.username === '' ? undefined : decodeURIComponent(url.username));
    const password = options.password ?? (url.password === '' ? undefined : decodeURIComponent(url.password));
    url.username = '';
    url.password = '';
    url.search = '';
    url.hash = '';
    this.baseUrl = url.toString().replace(/\/+$/, '');
    this.timeoutMs = options.timeoutMs ?? 5000;
    if (options.token !== undefined) this.authorization = `Bearer ${options.token}`;
    else if (username !== undefined) this.authorization = `Basic ${Buffer.from(`${username}:${password ?? ''}`).toString('base64')}`;
  }

  /** GET /api/2.0/mlflow/{path}?query; resolves with the parsed JSON body. */
  get(path: string, query: Query = {}): Promise<unknown> {
    const params = new URLSearchParams();
    for (const [k, v] of Object.entries(query)) if (v !== undefined) params.set(k, String(v));
    const qs = params.toString();
    return this.call('GET', qs === '' ? path : `${path}?${qs}`, undefined);
  }

  /** POST with a JSON body. */
  post(path: string, body: unknown): Promise<unknown> {
    return this.call('POST', path, body);
  }

  /** PATCH with a JSON body. */
  patch(path: string, body: unknown): Promise<unknown> {
    return this.call('PATCH', path, body);
  }

  /** DELETE with a JSON body (MLflow reads DELETE parameters from the body, as its Python client sends them). */
  delete(path: string, body: unknown): Promise<unknown> {
    return this.call('DELETE', path, body);
  }

  /** How errors name a call: method and URL without the query (which is not secret, but is noise). */
  where(method: string, path: string): string {
    return `${method} ${this.baseUrl}/api/2.0/mlflow/${path.split('?')[0] ?? ''}`;
  }

  /**
   * GET {trackingUri}/{path}?query outside the REST API 2.0 prefix (MLflow's artifact routes), as text;
   * fails like every other call on a non-2xx answer.
   */
  async getText(path: string, query: Query = {}): Promise<string> {
    const params = new URLSearchParams();
    for (const [k, v] of Object.entries(query)) if (v !== undefined) params.set(k, String(v));
    const qs = params.toString();
    const where = `GET ${this.baseUrl}/${path}`;
    const { res, text } = await this.send('GET', `${this.baseUrl}/${path}${qs === '' ? '' : `?${qs}`}`, where, undefined, '*/*');
    if (!res.ok) throw httpError(res, text, where);
    return text;
  }

  private async call(method: string, pathAndQuery: string, body: unknown): Promise<unknown> {
    const where = this.where(method, pathAndQuery);
    const { res, text } = await this.send(method, `${this.baseUrl}/api/2.0/mlflow/${pathAndQuery}`, where, body, 'application/json');
    if (!res.ok) throw httpError(res, text, where);
    let json: unknown;
    try {
      json = text === '' ? {} : JSON.parse(text);
    } catch {
      throw new MlflowError('bad_response', `MLflow answered ${res.status} with a body that is not JSON: ${JSON.stringify(text.slice(0, 120))}`, where, res.status);
    }
    return json;
  }

  private async send(method: string, url: string, where: string, body: unknown, accept: string): Promise<{ res: Response; text: string }> {
    const headers: Record<string, string> = { accept };
    if (this.authorization !== undefined) headers.authorization = this.authorization;
    if (body !== undefined) headers['content-type'] = 'application/json';
    try {
      const res = await fetch(url, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(this.timeoutMs),
        redirect: 'error',
      });
      return { res, text: await res.text() };
    } catch (err) {
      if (err instanceof Error && (err.name === 'TimeoutError' || err.name === 'AbortError')) {
        throw new MlflowError('timeout', `MLflow did not answer within ${this.timeoutMs}ms`, where, undefined, undefined, { cause: err });
      }
      const cause = err instanceof Error && err.cause !== undefined ? `: ${errorMessage(err.cause)}` : '';
      throw new MlflowError('unreachable', `cannot reach MLflow (${errorMessage(err)}${cause})`, where, undefined, undefined, { cause: err });
    }
  }
}

/** The MlflowError of a non-2xx answer, with MLflow's own error_code and message when the body has them. */
function httpError(res: Response, text: string, where: string): MlflowError {
  let json: unknown;
  try {
    json = text === '' ? {} : JSON.parse(text);
  } catch {
    json = undefined;
  }
  const { code, message } = mlflowErrorBody(json);
  const failure = res.status >= 500 ? 'http_5xx' : 'http_4xx';
  const detail = message ?? (text.slice(0, 200).trim() || res.statusText);
  return new MlflowError(failure, `MLflow answered ${res.status}${code ? ` ${code}` : ''}: ${detail}`, where, res.status, code);
}

/** MLflow's `{"error_code": ..., "message": ...}`, when the body is one. */
function mlflowErrorBody(json: unknown): { code: string | undefined; message: string | undefined } {
  if (json === null || typeof json !== 'object') return { code: undefined, message: undefined };
  const { error_code: code, message } = json as { error_code?: unknown; message?: unknown };
  return { code: typeof code === 'string' ? code : undefined, message: typeof message === 'string' ? message : undefined };
}
