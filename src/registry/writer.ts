import { isNotFound, MlflowError, MlflowRest, type MlflowClientOptions } from './mlflow-rest.js';
import { modelVersionAnswer, parseAnswer, toModelVersion } from './mlflow-wire.js';
import type { ModelVersion } from './types.js';

/**
 * The control plane's only writes to MLflow, made by rollouts (src/rollout/): model version tags (the
 * rollout's state and outcome) and aliases (promotion moves the stable one), over the REST API 2.0. Every
 * call is idempotent, so a write retried after a timeout that did land changes nothing: each is retried once
 * when the connection fails (MLflow's server closes idle keep-alive connections, and a request sent at that
 * moment meets a closed socket). Writes go one at a time: MLflow on SQLite locks the whole database for a
 * write, and a burst of concurrent ones from several rollouts stalls it.
 */

async function once<T>(call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (err) {
    if (err instanceof MlflowError && err.failure === 'unreachable') return call();
    throw err;
  }
}

export class RegistryWriter {
  private readonly rest: MlflowRest;
  private queue: Promise<unknown> = Promise.resolve();

  /** Runs `call` after every write queued before it. */
  private serial<T>(call: () => Promise<T>): Promise<T> {
    const run = this.queue.then(() => once(call));
    this.queue = run.catch(() => undefined);
    return run;
  }

  constructor(options: MlflowClientOptions) {
    this.rest = new MlflowRest(options);
  }

  /** The tracking server, without credentials. */
  get trackingUri(): string {
    return this.rest.baseUrl;
  }

  /** One model version as MLflow reports it now (not from a snapshot): the read fencing is decided on. */
  async getVersion(name: string, version: string): Promise<ModelVersion> {
    const json = await once(() => this.rest.get('model-versions/get', { name, version }));
    return toModelVersion(parseAnswer(modelVersionAnswer, json, this.rest.where('GET', 'model-versions/get')).model_version);
  }

  /** Sets one tag of a model version. */
  async setVersionTag(name: string, version: string, key: string, value: string): Promise<void> {
    await this.serial(() => this.rest.post('model-versions/set-tag', { name, version, key, value }));
  }

  /** Deletes one tag of a model version; a tag that is not there is already deleted. */
  async deleteVersionTag(name: string, version: string, key: string): Promise<void> {
    try {
      await this.serial(() => this.rest.delete('model-versions/delete-tag', { name, version, key }));
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
  }

  /** Points `alias` at `version`, moving it from wherever it pointed. */
  async setAlias(name: string, alias: string, version: string): Promise<void> {
    await this.serial(() => this.rest.post('registered-models/alias', { name, alias, version }));
  }

  /** Removes an alias; one that is not set is already removed. */
  async deleteAlias(name: string, alias: string): Promise<void> {
    try {
      await this.serial(() => this.rest.delete('registered-models/alias', { name, alias }));
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
  }
}
