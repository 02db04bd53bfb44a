import { MlflowRest, type MlflowClientOptions } from './mlflow-rest.js';
import { modelVersionAnswer, parseAnswer, toModelVersion } from './mlflow-wire.js';
import type { ModelVersion } from './types.js';

/**
 * Writes to the MLflow Model Registry: thin REST calls for the quickstart and the tests (creating models and
 * versions, moving aliases and stages, tagging). The control plane itself never writes to MLflow.
 */

export type Stage = 'None' | 'Staging' | 'Production' | 'Archived';

export interface NewModelVersion {
  readonly name: string;
  /** Artifact URI of the model (e.g. runs:/<run>/model, models:/m-<id>, or a path). */
  readonly source: string;
  readonly runId?: string;
  readonly description?: string;
  readonly tags?: Readonly<Record<string, string>>;
}

const tagList = (tags: Readonly<Record<string, string>> = {}): { key: string; value: string }[] =>
  Object.entries(tags).map(([key, value]) => ({ key, value }));

export class MlflowAdmin {
  private readonly rest: MlflowRest;

  constructor(options: MlflowClientOptions) {
    this.rest = new MlflowRest(options);
  }

  /** Creates a registered model; fails with RESOURCE_ALREADY_EXISTS if there is one by that name. */
  async createRegisteredModel(name: string, options: { description?: string; tags?: Readonly<Record<string, string>> } = {}): Promise<void> {
    await this.rest.post('registered-models/create', { name, description: options.description, tags: tagList(options.tags) });
  }

  /** Deletes a registered model with all its versions. */
  async deleteRegisteredModel(name: string): Promise<void> {
    await this.rest.delete('registered-models/delete', { name });
  }

  /** Creates the next version of a model; resolves with it as MLflow reports it. */
  async createModelVersion(version: NewModelVersion): Promise<ModelVersion> {
    const json = await this.rest.post('model-versions/create', {
      name: version.name,
      source: version.source,
      run_id: version.runId,
      description: version.description,
      tags: tagList(version.tags),
    });
    return toModelVersion(parseAnswer(modelVersionAnswer, json, this.rest.where('POST', 'model-versions/create')).model_version);
  }

  /** One model version as MLflow reports it. */
  async getModelVersion(name: string, version: string): Promise<ModelVersion> {
    const json = await this.rest.get('model-versions/get', { name, version });
    return toModelVersion(parseAnswer(modelVersionAnswer, json, this.rest.where('GET', 'model-versions/get')).model_version);
  }

  /** Points `alias` at `version` (moving it if it pointed elsewhere). */
  async setAlias(name: string, alias: string, version: string): Promise<void> {
    await this.rest.post('registered-models/alias', { name, alias, version });
  }

  async deleteAlias(name: string, alias: string): Promise<void> {
    await this.rest.delete('registered-models/alias', { name, alias });
  }

  /** Moves a version to a stage; with archiveExisting, the versions already in that stage go to Archived. */
  async transitionStage(name: string, version: string, stage: Stage, archiveExisting = false): Promise<ModelVersion> {
    const json = await this.rest.post('model-versions/transition-stage', { name, version, stage, archive_existing_versions: archiveExisting });
    return toModelVersion(parseAnswer(modelVersionAnswer, json, this.rest.where('POST', 'model-versions/transition-stage')).model_version);
  }

  async setModelVersionTag(name: string, version: string, key: string, value: string): Promise<void> {
    await this.rest.post('model-versions/set-tag', { name, version, key, value });
  }

  async deleteModelVersionTag(name: string, version: string, key: string): Promise<void> {
    await this.rest.delete('model-versions/delete-tag', { name, version, key });
  }

  async setRegisteredModelTag(name: string, key: string, value: string): Promise<void> {
    await this.rest.post('registered-models/set-tag', { name, key, value });
  }
}
