import { FlowgateError } from '../../errors.js';
import { ALL_EVENTS, MODEL_EVENTS, MlflowWebhooks, type MlflowWebhook } from '../../registry/mlflow-webhooks.js';
import { readWebhookSecrets, WEBHOOK_PATH } from '../../registry/webhook-receiver.js';
import { UsageError, type Command, type OptionValues } from '../command.js';
import { mlflowOptions } from '../registry-options.js';

/** `flowgate webhooks register|list|delete|test`: the MLflow webhook that tells Flowgate a model changed. */

const ACTIONS = ['register', 'list', 'delete', 'test'] as const;
type Action = (typeof ACTIONS)[number];

const str = (options: OptionValues, name: string): string | undefined => {
  const v = options[name];
  return typeof v === 'string' && v !== '' ? v : undefined;
};

function eventsOption(options: OptionValues): string[] {
  const text = str(options, 'events');
  if (text === undefined) return [...MODEL_EVENTS];
  const events = text.split(',').map((e) => e.trim()).filter((e) => e !== '');
  const unknown = events.filter((e) => !(ALL_EVENTS as readonly string[]).includes(e));
  if (unknown.length > 0) throw new UsageError(`unknown webhook events: ${unknown.join(', ')} (known: ${ALL_EVENTS.join(', ')})`);
  if (events.length === 0) throw new UsageError('--events names no event');
  return events;
}

function urlOption(options: OptionValues): string {
  const text = str(options, 'url');
  if (text === undefined) throw new UsageError('--url is required: the address MLflow delivers to, e.g. https://flowgate.example:8443/webhooks/mlflow');
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new UsageError(`--url is not a URL: ${text}`);
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') throw new UsageError('--url must be https (or http behind a TLS-terminating proxy)');
  // A bare host means the receiver's own path; any other path is the operator's (a proxy may rewrite it).
  if (url.pathname === '/' || url.pathname === '') url.pathname = WEBHOOK_PATH;
  return url.toString();
}

function describe(w: MlflowWebhook): string {
  return `${w.id}  ${w.name}  ${w.status}  ${w.url}\n    events: ${w.events.join(', ')}\n`;
}

/** The webhook an action applies to: --id, else the one named --name. */
async function target(api: MlflowWebhooks, options: OptionValues): Promise<MlflowWebhook> {
  const id = str(options, 'id');
  const name = str(options, 'name') ?? 'flowgate';
  const all = await api.list();
  const found = id !== undefined ? all.find((w) => w.id === id) : all.find((w) => w.name === name);
  if (!found) throw new FlowgateError('webhook.not_found', id !== undefined ? `MLflow has no webhook with id ${id}` : `MLflow has no webhook named '${name}'`);
  return found;
}

export const webhooksCommand: Command = {
  name: 'webhooks',
  summary: 'Register, list, test or delete the MLflow webhook that makes Flowgate re-read a model as soon as it changes.',
  args: 'register|list|test|delete',
  options: {
    'mlflow-uri': { type: 'string', description: 'MLflow tracking server (credentials from MLFLOW_TRACKING_TOKEN or _USERNAME/_PASSWORD)', env: 'MLFLOW_TRACKING_URI', placeholder: 'URL' },
    'mlflow-timeout': { type: 'string', description: 'timeout of each MLflow request, in ms', env: 'FLOWGATE_MLFLOW_TIMEOUT_MS', default: '5000', placeholder: 'MS' },
    url: { type: 'string', description: `register: where MLflow delivers (flowgate serve --webhook-listen; path ${WEBHOOK_PATH} when none is given)`, placeholder: 'URL' },
    'secret-file': { type: 'string', description: 'register: the file of flowgate serve --webhook-secret-file; its first line is given to MLflow', env: 'FLOWGATE_WEBHOOK_SECRET_FILE', placeholder: 'FILE' },
    name: { type: 'string', description: 'the webhook name in MLflow', default: 'flowgate', placeholder: 'NAME' },
    id: { type: 'string', description: 'test/delete: the webhook id (instead of --name)', placeholder: 'ID' },
    events: { type: 'string', description: `register: comma-separated events (default: ${MODEL_EVENTS.join(', ')})`, placeholder: 'LIST' },
  },
  notes: [
    'register is idempotent: a webhook of the same name is updated (URL, events, secret) instead of duplicated.',
    'MLflow delivers only to https URLs unless its server runs with MLFLOW_WEBHOOK_ALLOWED_SCHEMES=https,http, and',
    'never to private or loopback addresses unless it runs with MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS=true.',
    'Example: flowgate webhooks register --mlflow-uri http://mlflow:5000 --url https://flowgate:8443 --secret-file /etc/flowgate/webhook-secret',
  ].join('\n'),
  async run(options, positionals) {
    const [action, ...rest] = positionals;
    if (!action || !(ACTIONS as readonly string[]).includes(action) || rest.length > 0) throw new UsageError(`give one action: ${ACTIONS.join(', ')}`);
    const mlflow = mlflowOptions(options);
    if (!mlflow) throw new UsageError('--mlflow-uri (or MLFLOW_TRACKING_URI) is required');
    const api = new MlflowWebhooks(mlflow);
    try {
      return await runAction(action as Action, api, options);
    } catch (err) {
      if (!(err instanceof FlowgateError)) throw err;
      process.stderr.write(`flowgate webhooks ${action}: ${err.toString()}\n`);
      return 1;
    }
  },
};

async function runAction(action: Action, api: MlflowWebhooks, options: OptionValues): Promise<number> {
  switch (action) {
    case 'register': {
      const secretFile = str(options, 'secret-file');
      if (secretFile === undefined) throw new UsageError('--secret-file is required: deliveries without a signature are refused');
      const [secret] = readWebhookSecrets(secretFile);
      const { webhook, created } = await api.register({ name: str(options, 'name') ?? 'flowgate', url: urlOption(options), secret: secret as string, events: eventsOption(options) });
      process.stdout.write(`${created ? 'created' : 'updated'} ${describe(webhook)}`);
      return 0;
    }
    case 'list': {
      const all = await api.list();
      process.stdout.write(all.length === 0 ? 'no webhooks\n' : all.map(describe).join(''));
      return 0;
    }
    case 'test': {
      const webhook = await target(api, options);
      const result = await api.test(webhook.id);
      const detail = result.error ?? `HTTP ${result.status ?? '?'} ${result.body?.trim() ?? ''}`;
      process.stdout.write(`${result.success ? 'delivered' : 'failed'}: ${detail}\n`);
      return result.success ? 0 : 1;
    }
    case 'delete': {
      const webhook = await target(api, options);
      await api.delete(webhook.id);
      process.stdout.write(`deleted ${webhook.id} (${webhook.name})\n`);
      return 0;
    }
  }
}
