import { loadRegistryFile } from '../registry/file.js';
import { MlflowClient, type MlflowClientOptions } from '../registry/mlflow-client.js';
import type { RegistrySnapshot } from '../registry/types.js';
import { UsageError, type OptionSpec, type OptionValues } from './command.js';

/** The options that name where the registry comes from: an MLflow server, or a JSON file (for review). */
export function registryOptions(fileAllowed: boolean): Record<string, OptionSpec> {
  return {
    'mlflow-uri': { type: 'string', description: 'MLflow tracking server (credentials from MLFLOW_TRACKING_TOKEN or _USERNAME/_PASSWORD)', env: 'MLFLOW_TRACKING_URI', placeholder: 'URL' },
    registry: { type: 'string', description: fileAllowed ? 'a registry JSON file instead of MLflow (see examples/quickstart/registry.json)' : 'a registry JSON file to check against', placeholder: 'FILE' },
    'mlflow-timeout': { type: 'string', description: 'timeout of each MLflow request, in ms', env: 'FLOWGATE_MLFLOW_TIMEOUT_MS', default: '5000', placeholder: 'MS' },
  };
}

/** MLflow client options from the CLI options and MLflow's own environment variables for credentials. */
export function mlflowOptions(options: OptionValues, env: NodeJS.ProcessEnv = process.env): MlflowClientOptions | undefined {
  const uri = options['mlflow-uri'];
  if (typeof uri !== 'string' || uri === '') return undefined;
  const timeoutMs = Number(options['mlflow-timeout']);
  if (!Number.isInteger(timeoutMs) || timeoutMs <= 0) throw new UsageError('--mlflow-timeout must be a positive number of milliseconds');
  const nonEmpty = (v: string | undefined): string | undefined => (v === '' ? undefined : v);
  return {
    trackingUri: uri,
    token: nonEmpty(env.MLFLOW_TRACKING_TOKEN),
    username: nonEmpty(env.MLFLOW_TRACKING_USERNAME),
    password: nonEmpty(env.MLFLOW_TRACKING_PASSWORD),
    timeoutMs,
  };
}

/** One registry snapshot from --registry FILE or --mlflow-uri; undefined when neither is given. */
export async function loadRegistryOnce(options: OptionValues): Promise<RegistrySnapshot | undefined> {
  if (typeof options.registry === 'string' && options.registry !== '') {
    if (typeof options['mlflow-uri'] === 'string' && options['mlflow-uri'] !== '' && process.env.MLFLOW_TRACKING_URI !== options['mlflow-uri']) {
      throw new UsageError('give either --mlflow-uri or --registry, not both');
    }
    return loadRegistryFile(options.registry);
  }
  const mlflow = mlflowOptions(options);
  return mlflow ? new MlflowClient(mlflow).fetchSnapshot() : undefined;
}
