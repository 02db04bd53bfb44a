/**
 * RegistrySnapshot: what the MLflow Model Registry says at one moment, normalised and immutable.
 * Produced by the registry poller (or read from a file for `flowgate render --registry`); read by the IR join.
 */

/** One MLflow model version, as the registry reports it. */
export interface ModelVersion {
  /** Registered model name. */
  readonly name: string;
  /** MLflow's version number, kept as the decimal string MLflow uses ("3"). */
  readonly version: string;
  /** READY | PENDING_REGISTRATION | FAILED_REGISTRATION; only READY versions are ever routed to. */
  readonly status: string;
  /** current_stage: None | Staging | Production | Archived. */
  readonly stage: string;
  /** Aliases pointing at this version, sorted. */
  readonly aliases: readonly string[];
  readonly tags: Readonly<Record<string, string>>;
  readonly source: string;
  readonly runId: string;
  /** Epoch milliseconds. */
  readonly createdAt: number;
  readonly updatedAt: number;
}

/** One registered model with all its versions (sorted by version number, ascending). */
export interface RegisteredModel {
  readonly name: string;
  readonly description: string;
  readonly tags: Readonly<Record<string, string>>;
  /** alias -> version, as MLflow reports it on the registered model. */
  readonly aliases: Readonly<Record<string, string>>;
  readonly versions: readonly ModelVersion[];
}

/** MLflow's prompt types: a text template, or a chat template (a JSON list of {role, content} messages). */
export type PromptType = 'text' | 'chat';

/** One version of a prompt of MLflow's Prompt Registry, as the registry reports it (the template unparsed). */
export interface PromptVersion {
  readonly version: string;
  readonly type: PromptType;
  /** The `mlflow.prompt.text` tag: the template text, or for a chat prompt the JSON list of messages. */
  readonly template: string;
}

/**
 * A prompt of MLflow's Prompt Registry: a registered model tagged `mlflow.prompt.is_prompt`, each version
 * holding its template in the `mlflow.prompt.text` tag.
 */
export interface RegistryPrompt {
  readonly name: string;
  /** alias -> version. */
  readonly aliases: Readonly<Record<string, string>>;
  /** Sorted by version number, ascending. */
  readonly versions: readonly PromptVersion[];
}

/** The whole registry view the control plane routes from. */
export interface RegistrySnapshot {
  /** Epoch milliseconds of the fetch that produced it. */
  readonly fetchedAt: number;
  /** Content hash of the models (independent of fetchedAt): equal hashes mean nothing changed. */
  readonly hash: string;
  /** Every registered model fetched, prompts included (they are registered models in MLflow's store). */
  readonly models: ReadonlyMap<string, RegisteredModel>;
  /** The prompts among `models`, read as prompts. */
  readonly prompts: ReadonlyMap<string, RegistryPrompt>;
}
