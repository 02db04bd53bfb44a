import { z } from 'zod';
import { MlflowRest, type MlflowClientOptions } from './mlflow-rest.js';
import { parseAnswer } from './mlflow-wire.js';

/**
 * MLflow 3's webhooks REST API (/api/2.0/mlflow/webhooks): create, list, update, delete and test the
 * webhooks through which MLflow tells Flowgate that a registered model changed. Used by `flowgate webhooks`.
 */

/**
 * The registry events that change what a model routes to or which prompt it sends (a prompt's new version or
 * moved alias); stage transitions and deletions have no event (polling sees them).
 */
export const MODEL_EVENTS = [
  'registered_model.created',
  'model_version.created',
  'model_version_tag.set',
  'model_version_tag.deleted',
  'model_version_alias.created',
  'model_version_alias.deleted',
  'prompt.created',
  'prompt_version.created',
  'prompt_alias.created',
  'prompt_alias.deleted',
] as const;

/** Every event MLflow 3.x can deliver, as `entity.action`. */
export const ALL_EVENTS = [...MODEL_EVENTS, 'prompt_tag.set', 'prompt_tag.deleted', 'prompt_version_tag.set', 'prompt_version_tag.deleted'] as const;

const wireEvent = z.object({ entity: z.string(), action: z.string() });
const wireWebhook = z.object({
  webhook_id: z.string(),
  name: z.string(),
  url: z.string(),
  description: z.string().default(''),
  events: z.array(wireEvent).default([]),
  status: z.string().default('ACTIVE'),
  creation_timestamp: z.union([z.number(), z.string()]).transform(Number).optional(),
});
const webhookAnswer = z.object({ webhook: wireWebhook });
const webhooksPage = z.object({ webhooks: z.array(wireWebhook).default([]), next_page_token: z.string().optional() });
const testAnswer = z.object({
  result: z.object({ success: z.boolean().default(false), response_status: z.number().optional(), response_body: z.string().optional(), error_message: z.string().optional() }),
});

/** A webhook as MLflow reports it (never with its secret). */
export interface MlflowWebhook {
  readonly id: string;
  readonly name: string;
  readonly url: string;
  readonly description: string;
  /** `entity.action`, lower case, as MLflow's documentation writes them. */
  readonly events: readonly string[];
  readonly status: string;
}

export interface WebhookSpec {
  readonly name: string;
  readonly url: string;
  readonly secret: string;
  readonly events: readonly string[];
  readonly description?: string;
}

/** MLflow's result of sending a test delivery. */
export interface WebhookTestResult {
  readonly success: boolean;
  readonly status: number | undefined;
  readonly body: string | undefined;
  readonly error: string | undefined;
}

/** `model_version_alias.created` -> the proto JSON MLflow reads. */
function toWireEvent(event: string): { entity: string; action: string } {
  const [entity = '', action = ''] = event.split('.');
  return { entity: entity.toUpperCase(), action: action.toUpperCase() };
}

function fromWire(w: z.infer<typeof wireWebhook>): MlflowWebhook {
  return {
    id: w.webhook_id,
    name: w.name,
    url: w.url,
    description: w.description,
    events: w.events.map((e) => `${e.entity.toLowerCase()}.${e.action.toLowerCase()}`),
    status: w.status,
  };
}

export class MlflowWebhooks {
  private readonly rest: MlflowRest;

  constructor(options: MlflowClientOptions) {
    this.rest = new MlflowRest(options);
  }

  /** Every webhook, all pages. */
  async list(): Promise<MlflowWebhook[]> {
    const out: MlflowWebhook[] = [];
    let token: string | undefined;
    for (let page = 0; page < 1000; page++) {
      const json = await this.rest.get('webhooks', { max_results: 100, page_token: token });
      const parsed = parseAnswer(webhooksPage, json, this.rest.where('GET', 'webhooks'));
      out.push(...parsed.webhooks.map(fromWire));
      token = parsed.next_page_token;
      if (!token) break;
    }
    return out;
  }

  /**
   * Creates the webhook, or, when one of the same name exists, points it at the spec's URL, events and secret
   * and makes it active: registering twice leaves one webhook.
   */
  async register(spec: WebhookSpec): Promise<{ readonly webhook: MlflowWebhook; readonly created: boolean }> {
    const existing = (await this.list()).find((w) => w.name === spec.name);
    const body = {
      name: spec.name,
      url: spec.url,
      events: spec.events.map(toWireEvent),
      secret: spec.secret,
      description: spec.description ?? 'Flowgate: re-read the registered model at once',
      status: 'ACTIVE',
    };
    if (existing) {
      const json = await this.rest.patch(`webhooks/${encodeURIComponent(existing.id)}`, body);
      return { webhook: fromWire(parseAnswer(webhookAnswer, json, this.rest.where('PATCH', 'webhooks/{id}')).webhook), created: false };
    }
    const json = await this.rest.post('webhooks', body);
    return { webhook: fromWire(parseAnswer(webhookAnswer, json, this.rest.where('POST', 'webhooks')).webhook), created: true };
  }

  async delete(id: string): Promise<void> {
    await this.rest.delete(`webhooks/${encodeURIComponent(id)}`, {});
  }

  /** Asks MLflow to send a test delivery (an example payload of `event`, default the webhook's first). */
  async test(id: string, event?: string): Promise<WebhookTestResult> {
    const json = await this.rest.post(`webhooks/${encodeURIComponent(id)}/test`, event ? { event: toWireEvent(event) } : {});
    const { result } = parseAnswer(testAnswer, json, this.rest.where('POST', 'webhooks/{id}/test'));
    return { success: result.success, status: result.response_status, body: result.response_body, error: result.error_message };
  }
}
