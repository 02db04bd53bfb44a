import { z } from 'zod';
import { MlflowError } from './mlflow-rest.js';
import type { ModelVersion, RegisteredModel } from './types.js';

/**
 * The JSON shapes of the MLflow REST API 2.0 model-registry answers, and their mapping to Flowgate's
 * registry types. Only the fields Flowgate reads are checked; MLflow may add others freely. Proto3 JSON
 * leaves out empty lists and default values, so nearly everything is optional here.
 */

// int64 fields arrive as JSON numbers from MLflow's own server and as strings from proto3-JSON gateways.
const int64 = z.union([z.number(), z.string().regex(/^-?\d+$/)]).transform(Number);
const tagList = z.array(z.object({ key: z.string(), value: z.string().default('') })).default([]);

export const wireModelVersion = z.object({
  name: z.string(),
  version: z.union([z.string(), z.number()]).transform(String),
  creation_timestamp: int64.optional(),
  last_updated_timestamp: int64.optional(),
  current_stage: z.string().default('None'),
  source: z.string().default(''),
  run_id: z.string().default(''),
  status: z.string().default('READY'),
  tags: tagList,
  aliases: z.array(z.string()).default([]),
});
export type WireModelVersion = z.infer<typeof wireModelVersion>;

export const wireRegisteredModel = z.object({
  name: z.string(),
  description: z.string().default(''),
  tags: tagList,
  aliases: z.array(z.object({ alias: z.string(), version: z.union([z.string(), z.number()]).transform(String) })).default([]),
});
export type WireRegisteredModel = z.infer<typeof wireRegisteredModel>;

export const registeredModelsPage = z.object({
  registered_models: z.array(wireRegisteredModel).default([]),
  next_page_token: z.string().optional(),
});
export const modelVersionsPage = z.object({
  model_versions: z.array(wireModelVersion).default([]),
  next_page_token: z.string().optional(),
});
export const registeredModelAnswer = z.object({ registered_model: wireRegisteredModel });
export const modelVersionAnswer = z.object({ model_version: wireModelVersion });

/** Parses an MLflow answer against `schema`, or fails with a bad_response MlflowError naming the call. */
export function parseAnswer<T extends z.ZodType>(schema: T, json: unknown, where: string): z.infer<T> {
  const parsed = schema.safeParse(json);
  if (parsed.success) return parsed.data;
  const first = parsed.error.issues[0];
  const at = first && first.path.length > 0 ? ` at ${first.path.join('.')}` : '';
  throw new MlflowError('bad_response', `MLflow's answer is not the expected shape${at}: ${first?.message ?? 'invalid'}`, where);
}

const tagRecord = (tags: readonly { key: string; value: string }[]): Record<string, string> =>
  Object.fromEntries(tags.map((t) => [t.key, t.value]));

/** A model version as Flowgate keeps it. */
export function toModelVersion(v: WireModelVersion): ModelVersion {
  return {
    name: v.name,
    version: v.version,
    status: v.status,
    stage: v.current_stage,
    aliases: v.aliases,
    tags: tagRecord(v.tags),
    source: v.source,
    runId: v.run_id,
    createdAt: v.creation_timestamp ?? 0,
    updatedAt: v.last_updated_timestamp ?? v.creation_timestamp ?? 0,
  };
}

/** A registered model as Flowgate keeps it, with the versions fetched separately. */
export function toRegisteredModel(m: WireRegisteredModel, versions: readonly ModelVersion[]): RegisteredModel {
  return {
    name: m.name,
    description: m.description,
    tags: tagRecord(m.tags),
    aliases: Object.fromEntries(m.aliases.map((a) => [a.alias, a.version])),
    versions,
  };
}

/** MLflow 3 stores prompts as registered models with this tag; they are never routed to. */
export function isPrompt(m: WireRegisteredModel): boolean {
  return m.tags.some((t) => t.key === 'mlflow.prompt.is_prompt' && t.value.toLowerCase() === 'true');
}
