import { MlflowError, MlflowRest, isNotFound, type MlflowClientOptions } from './mlflow-rest.js';
import {
  isPrompt,
  modelVersionsPage,
  parseAnswer,
  registeredModelAnswer,
  registeredModelsPage,
  toModelVersion,
  toRegisteredModel,
  type WireRegisteredModel,
} from './mlflow-wire.js';
import { registrySnapshotFrom } from './snapshot.js';
import type { ModelVersion, RegisteredModel, RegistrySnapshot } from './types.js';

/**
 * MlflowClient reads the MLflow Model Registry over the REST API 2.0 and turns it into RegistrySnapshots.
 * It only reads; MlflowAdmin writes.
 */

export { MlflowError, isNotFound, mlflowClientOptionsFromEnv, type MlflowClientOptions, type MlflowFailure } from './mlflow-rest.js';

/** A registered model without its versions (which MLflow serves from a separate search). */
export type RegisteredModelInfo = Omit<RegisteredModel, 'versions'>;

// A server that keeps answering with a next_page_token is broken; stop rather than loop forever.
const MAX_PAGES = 10_000;
// Batches (or per-name fetches) in flight at once when a snapshot is limited to named models.
const NAME_CONCURRENCY = 4;
// Names per `name IN (...)` search: the filter travels in the query string, so a batch stays a few KiB long.
const NAMES_PER_BATCH = 50;
/**
 * MLflow 3's searches leave prompts out unless the filter names the prompt tag (then they return prompts
 * only); registered-models/get reads either.
 */
const PROMPTS_ONLY = "tags.`mlflow.prompt.is_prompt` = 'true'";
const promptFilter = (filter: string): string => `${PROMPTS_ONLY} AND ${filter}`;

/**
 * The search-filter form of `name = <name>`. MLflow's filter grammar has no escape character, so a name is
 * quoted with whichever quote it does not contain.
 */
export function nameFilter(name: string): string {
  if (!name.includes("'")) return `name='${name}'`;
  if (!name.includes('"')) return `name="${name}"`;
  throw new MlflowError('bad_response', `the model name ${JSON.stringify(name)} has both quote characters and cannot be put in an MLflow search filter`, 'model-versions/search');
}

export class MlflowClient {
  private readonly rest: MlflowRest;
  private readonly pageSize: number;
  /** Set once the server answered 400 to a `name IN (...)` search (an old or foreign server): per-name reads from then on. */
  private inFilterRefused = false;

  constructor(options: MlflowClientOptions) {
    this.rest = new MlflowRest(options);
    this.pageSize = options.pageSize ?? 1000;
  }

  /** The tracking server's base URL, without credentials: safe to log. */
  get trackingUri(): string {
    return this.rest.baseUrl;
  }

  /** Every registered model (prompts excluded), following next_page_token to the end. */
  async listRegisteredModels(): Promise<RegisteredModelInfo[]> {
    const wire = (await this.searchRegisteredModels()).filter((m) => !isPrompt(m));
    return wire.map((m) => infoOf(m));
  }

  /** One registered model, or undefined when MLflow has none by that name. */
  async getRegisteredModel(name: string): Promise<RegisteredModelInfo | undefined> {
    const wire = await this.getWireRegisteredModel(name);
    return wire === undefined ? undefined : infoOf(wire);
  }

  /** alias -> version of one registered model; undefined when the model does not exist. */
  async aliases(name: string): Promise<Readonly<Record<string, string>> | undefined> {
    return (await this.getRegisteredModel(name))?.aliases;
  }

  /** The versions of one model (or of every model when `name` is undefined), all pages, in MLflow's order. */
  async searchModelVersions(name?: string): Promise<ModelVersion[]> {
    return this.searchVersionsByFilter(name === undefined ? undefined : nameFilter(name));
  }

  private async searchVersionsByFilter(filter: string | undefined): Promise<ModelVersion[]> {
    const path = 'model-versions/search';
    const out: ModelVersion[] = [];
    await this.paginate(path, filter === undefined ? {} : { filter }, (json, where) => {
      const page = parseAnswer(modelVersionsPage, json, where);
      out.push(...page.model_versions.map(toModelVersion));
      return page.next_page_token;
    });
    return out;
  }

  /**
   * The registry as one immutable snapshot: every registered model, or only those in `names` (a name MLflow
   * does not know is simply absent). Fails as a whole if any call fails; there are no partial snapshots.
   */
  async fetchSnapshot(names?: readonly string[]): Promise<RegistrySnapshot> {
    const models = names === undefined ? await this.fetchAll() : await this.fetchNamed(names);
    return registrySnapshotFrom(models, Date.now());
  }

  /** Every registered model and every prompt (prompts need their own searches). */
  private async fetchAll(): Promise<RegisteredModel[]> {
    const wire = [...(await this.searchRegisteredModels()), ...(await this.searchRegisteredModels(PROMPTS_ONLY))];
    const versions = [...(await this.searchModelVersions()), ...(await this.searchVersionsByFilter(PROMPTS_ONLY))];
    const byModel = new Map<string, ModelVersion[]>(wire.map((m) => [m.name, []]));
    // A version of a model created after the model list was read has no entry and waits for the next fetch.
    for (const v of versions) byModel.get(v.name)?.push(v);
    return wire.map((m) => toRegisteredModel(m, byModel.get(m.name) ?? []));
  }

  /** One registered model (or prompt) with its versions, read now; undefined when MLflow has none by that name. */
  async fetchModel(name: string): Promise<RegisteredModel | undefined> {
    const wire = await this.getWireRegisteredModel(name);
    if (wire === undefined) return undefined;
    const filter = nameFilter(name);
    return toRegisteredModel(wire, await this.searchVersionsByFilter(isPrompt(wire) ? promptFilter(filter) : filter));
  }

  /**
   * The named models in two searches per batch of names (`name IN (...)`, which MLflow 2.x servers accept for
   * both registered models and versions) rather than two calls per name; names holding a quote, which the
   * filter grammar cannot list, and servers that refuse IN fall back to one read per name.
   */
  private async fetchNamed(names: readonly string[]): Promise<RegisteredModel[]> {
    const unique = [...new Set(names)];
    const listable = unique.filter((n) => !n.includes("'"));
    const single = unique.filter((n) => n.includes("'"));
    const out: RegisteredModel[] = [];
    const batches: string[][] = [];
    for (let i = 0; i < listable.length; i += NAMES_PER_BATCH) batches.push(listable.slice(i, i + NAMES_PER_BATCH));
    // A few batches in flight at once, as the per-name reads: a poll of 1,000 models is 40 searches.
    const found = await mapLimit(batches, NAME_CONCURRENCY, (batch) => (this.inFilterRefused ? Promise.resolve(undefined) : this.fetchBatch(batch)));
    found.forEach((models, i) => {
      if (models) out.push(...models);
      else single.push(...(batches[i] as string[]));
    });
    const fetched = await mapLimit(single, NAME_CONCURRENCY, (name) => this.fetchModel(name));
    out.push(...fetched.filter((m): m is RegisteredModel => m !== undefined));
    return out;
  }

  /**
   * The models of one batch of quote-free names, or undefined when the server does not understand `IN`. The
   * names no model search found are looked for among the prompts (MLflow searches those separately).
   */
  private async fetchBatch(names: readonly string[]): Promise<RegisteredModel[] | undefined> {
    const inList = (list: readonly string[]): string => `name IN (${list.map((n) => `'${n}'`).join(', ')})`;
    let wire: WireRegisteredModel[];
    try {
      wire = await this.searchRegisteredModels(inList(names));
    } catch (err) {
      if (err instanceof MlflowError && err.status === 400) {
        this.inFilterRefused = true;
        return undefined;
      }
      throw err;
    }
    const found = new Set(wire.map((m) => m.name));
    const rest = names.filter((n) => !found.has(n));
    const prompts = rest.length === 0 ? [] : await this.searchRegisteredModels(promptFilter(inList(rest)));
    const versions = [
      ...(wire.length === 0 ? [] : await this.searchVersionsByFilter(inList(wire.map((m) => m.name)))),
      ...(prompts.length === 0 ? [] : await this.searchVersionsByFilter(promptFilter(inList(prompts.map((m) => m.name))))),
    ];
    const all = [...wire, ...prompts];
    const byModel = new Map<string, ModelVersion[]>(all.map((m) => [m.name, []]));
    for (const v of versions) byModel.get(v.name)?.push(v);
    // LIKE-free IN is exact in MLflow's stores, but a server that matched loosely must not add models.
    const wanted = new Set(names);
    return all.filter((m) => wanted.has(m.name)).map((m) => toRegisteredModel(m, byModel.get(m.name) ?? []));
  }

  private async searchRegisteredModels(filter?: string): Promise<WireRegisteredModel[]> {
    const out: WireRegisteredModel[] = [];
    await this.paginate('registered-models/search', filter === undefined ? {} : { filter }, (json, where) => {
      const page = parseAnswer(registeredModelsPage, json, where);
      // A search without the prompt tag never returns prompts from MLflow 3; one with it returns prompts only.
      const prompts = filter?.startsWith(PROMPTS_ONLY) === true;
      out.push(...page.registered_models.filter((m) => isPrompt(m) === prompts));
      return page.next_page_token;
    });
    return out;
  }

  private async getWireRegisteredModel(name: string): Promise<WireRegisteredModel | undefined> {
    try {
      const json = await this.rest.get('registered-models/get', { name });
      return parseAnswer(registeredModelAnswer, json, this.rest.where('GET', 'registered-models/get')).registered_model;
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  }

  /** Calls a search endpoint page after page; `read` consumes one page and returns its next_page_token. */
  private async paginate(path: string, query: Record<string, string>, read: (json: unknown, where: string) => string | undefined): Promise<void> {
    const seen = new Set<string>();
    let token: string | undefined;
    for (let page = 0; page < MAX_PAGES; page++) {
      const json = await this.rest.get(path, { ...query, max_results: this.pageSize, page_token: token });
      token = read(json, this.rest.where('GET', path));
      if (token === undefined || token === '') return;
      if (seen.has(token)) throw new MlflowError('bad_response', 'MLflow repeated the page token of an earlier page', this.rest.where('GET', path));
      seen.add(token);
    }
    throw new MlflowError('bad_response', `MLflow returned more than ${MAX_PAGES} pages`, this.rest.where('GET', path));
  }
}

function infoOf(m: WireRegisteredModel): RegisteredModelInfo {
  const { versions: _versions, ...info } = toRegisteredModel(m, []);
  return info;
}

/** `fn` over `items` with at most `limit` calls in flight; results in input order. */
async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const results: R[] = new Array<R>(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      results[i] = await fn(items[i] as T);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}
