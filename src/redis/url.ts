/**
 * The Redis addresses Flowgate accepts, read without loading a Redis client (the CLI checks `--redis-url`
 * before anything connects): the forms are described in client.ts, which opens them.
 */

export interface RedisNode {
  readonly host: string;
  readonly port: number;
}

interface Common {
  readonly username: string | undefined;
  readonly password: string | undefined;
  readonly tls: boolean;
}

export type RedisTarget =
  | ({ readonly kind: 'single'; readonly url: string } & Common)
  | ({ readonly kind: 'cluster'; readonly nodes: readonly RedisNode[] } & Common)
  | ({ readonly kind: 'sentinel'; readonly sentinels: readonly RedisNode[]; readonly masterName: string; readonly db: number } & Common);

/** A Redis address that cannot be used, with a message naming what is wrong (never the password). */
export class RedisUrlError extends Error {
  override readonly name = 'RedisUrlError';
}

const SCHEME = /^(rediss?)(\+(cluster|sentinel))?:\/\//i;

function nodes(text: string, shown: string): RedisNode[] {
  const list = text.split(',').map((part) => {
    const m = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+)(?::(\d{1,5}))?$/.exec(part.trim());
    const port = Number(m?.[2] ?? 6379);
    if (!m || !(port >= 1 && port <= 65535)) throw new RedisUrlError(`${shown}: '${part}' is not host:port`);
    return { host: (m[1] as string).replace(/^\[|\]$/g, ''), port };
  });
  if (list.length === 0) throw new RedisUrlError(`${shown}: names no node`);
  return list;
}

/** Reads a Redis address; throws RedisUrlError for one that is not of the forms above. */
export function parseRedisUrl(url: string): RedisTarget {
  const scheme = SCHEME.exec(url);
  // Shown in errors without what sits between :// and @ (the credentials).
  const shown = url.replace(/\/\/[^@/]*@/, '//***@');
  if (!scheme) throw new RedisUrlError(`${shown}: a Redis address starts with redis://, rediss://, redis+cluster:// or redis+sentinel://`);
  const tls = (scheme[1] as string).toLowerCase() === 'rediss';
  const mode = scheme[3]?.toLowerCase();
  let rest = url.slice(scheme[0].length);
  let username: string | undefined;
  let password: string | undefined;
  const at = rest.lastIndexOf('@');
  if (at >= 0) {
    const credentials = rest.slice(0, at);
    rest = rest.slice(at + 1);
    const colon = credentials.indexOf(':');
    const user = decodeURIComponent(colon >= 0 ? credentials.slice(0, colon) : credentials);
    username = user === '' || colon < 0 ? undefined : user;
    password = colon >= 0 ? decodeURIComponent(credentials.slice(colon + 1)) : user === '' ? undefined : user;
  }
  if (mode === undefined) return { kind: 'single', url, username, password, tls };
  const slash = rest.indexOf('/');
  const hosts = slash >= 0 ? rest.slice(0, slash) : rest;
  const path = slash >= 0 ? rest.slice(slash + 1) : '';
  if (mode === 'cluster') {
    if (path !== '') throw new RedisUrlError(`${shown}: a cluster has no database number or path (every node uses db 0)`);
    return { kind: 'cluster', nodes: nodes(hosts, shown), username, password, tls };
  }
  const [masterName = '', dbText = '0'] = path.split('/');
  if (!/^[\w.-]+$/.test(masterName)) throw new RedisUrlError(`${shown}: name the master after the hosts: redis+sentinel://host:port,…/MASTER`);
  const db = Number(dbText);
  if (!Number.isInteger(db) || db < 0) throw new RedisUrlError(`${shown}: '${dbText}' is not a database number`);
  return { kind: 'sentinel', sentinels: nodes(hosts, shown), masterName, db, username, password, tls };
}
