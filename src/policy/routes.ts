import type { GatewayPolicy, ModelPolicy, PipelinePolicy } from './schema/index.js';

/**
 * The routes a Model claims once its defaults are applied. The loader needs them to find two models claiming
 * the same (listener, host, path prefix); the IR uses the same function so both agree on what a default is.
 */

export interface ModelRoute {
  readonly listener: string;
  readonly pathPrefix: string;
  readonly host: string;
  /** Index in the Model's `routes` list; undefined for the default route (no `routes` key written). */
  readonly routeIndex: number | undefined;
  /** Index in that route's `hosts` list (0 for a defaulted host). */
  readonly hostIndex: number;
}

/** The default path prefix of a model: /models/{name}; for a gRPC model /{service} (or / for every service), since gRPC clients cannot add a prefix. */
export function defaultPathPrefix(modelName: string, grpc?: { readonly service?: string | undefined }): string {
  if (grpc) return grpc.service !== undefined ? `/${grpc.service}` : '/';
  return `/models/${modelName}`;
}

function modelDefaultPrefix(model: ModelPolicy): string {
  return defaultPathPrefix(model.name, model.protocol === 'grpc' ? (model.grpc ?? {}) : undefined);
}

/** The default path prefix of a pipeline: /pipelines/{name}. */
export function defaultPipelinePrefix(pipelineName: string): string {
  return `/pipelines/${pipelineName}`;
}

/**
 * Every (listener, host, path prefix) the model claims, in the order written; defaults: every listener,
 * /models/{name}, host *. A model with an `llm` block claims none by default: it is served on the
 * OpenAI-compatible API, where requests find it by the body's `model`.
 */
export function modelRoutes(model: ModelPolicy, gateway: GatewayPolicy): readonly ModelRoute[] {
  return remembered(model, gateway, () => (model.routes === undefined && model.llm !== undefined ? [] : claimedRoutes(model, gateway, () => modelDefaultPrefix(model))));
}

/** The routes a Pipeline claims: as a Model's, with /pipelines/{name} as the default prefix. */
export function pipelineRoutes(pipeline: PipelinePolicy, gateway: GatewayPolicy): readonly ModelRoute[] {
  return remembered(pipeline, gateway, () => claimedRoutes(pipeline, gateway, defaultPipelinePrefix));
}

/**
 * The routes of each frozen document with the frozen Gateway they were computed for: a load after an edit of
 * one file in a thousand, and the IR build after it, reuse the other documents' routes (the loader keeps
 * their objects). Documents not yet frozen (a first load, a test's literal) are computed each time.
 */
const routesOf = new WeakMap<object, { readonly gateway: GatewayPolicy; readonly routes: readonly ModelRoute[] }>();

function remembered(doc: object, gateway: GatewayPolicy, compute: () => ModelRoute[]): readonly ModelRoute[] {
  const known = routesOf.get(doc);
  if (known?.gateway === gateway) return known.routes;
  const routes = Object.freeze(compute());
  if (Object.isFrozen(doc) && Object.isFrozen(gateway)) routesOf.set(doc, { gateway, routes });
  return routes;
}

function claimedRoutes(doc: Pick<ModelPolicy, 'name' | 'routes'>, gateway: GatewayPolicy, defaultPrefix: (name: string) => string): ModelRoute[] {
  const out: ModelRoute[] = [];
  if (doc.routes === undefined) {
    for (const l of gateway.listeners) {
      out.push({ listener: l.name, pathPrefix: defaultPrefix(doc.name), host: '*', routeIndex: undefined, hostIndex: 0 });
    }
    return out;
  }
  doc.routes.forEach((r, routeIndex) => {
    const pathPrefix = r.pathPrefix ?? defaultPrefix(doc.name);
    r.hosts.forEach((host, hostIndex) => out.push({ listener: r.listener, pathPrefix, host, routeIndex, hostIndex }));
  });
  return out;
}
