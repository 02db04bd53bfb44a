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

/** The whole registry view the control plane routes from. */
export interface RegistrySnapshot {
  /** Epoch milliseconds of the fetch that produced it. */
  readonly fetchedAt: number;
  /** Content hash of the models (independent of fetchedAt): equal hashes mean nothing changed. */
  readonly hash: string;
  readonly models: ReadonlyMap<string, RegisteredModel>;
}
