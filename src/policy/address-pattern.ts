import { BlockList, isIP, type SocketAddress } from 'node:net';

/**
 * Address patterns for `Gateway.upstreams.allow` / `deny`: which upstream addresses a model version may be
 * served at. One pattern is a host part and an optional port part:
 *
 *   10.0.0.0/8   10.1.2.3   fd00::/8   [fd00::/8]:443   [::1]:9901
 *   *.models.svc   fraud-v3.models.svc:8080   *:9901   127.0.0.0/8:18000-18099
 *
 * The host part is a CIDR or IP (matching addresses, IPv4-mapped IPv6 read as IPv4), a DNS name, `*.` and a
 * domain (any name below it), or `*` (any host, name or address). Names match names, never addresses: the
 * control plane does not resolve them (see docs/security-infra.md).
 */

export interface AddressPattern {
  readonly text: string;
  readonly host:
    | { readonly kind: 'cidr'; readonly list: BlockList }
    | { readonly kind: 'name'; readonly name: string }
    | { readonly kind: 'domain'; readonly suffix: string }
    | { readonly kind: 'any' };
  /** Inclusive port range; undefined for every port. */
  readonly ports: readonly [number, number] | undefined;
}

const LABEL = /^[a-z0-9]([a-z0-9-]*[a-z0-9])?$/;

function parsePorts(text: string | undefined): readonly [number, number] | undefined | string {
  if (text === undefined) return undefined;
  const m = /^(\d{1,5})(?:-(\d{1,5}))?$/.exec(text);
  if (!m) return `'${text}' is not a port or a port range like 8000-8999`;
  const lo = Number(m[1]);
  const hi = m[2] === undefined ? lo : Number(m[2]);
  if (lo < 1 || hi > 65535 || lo > hi) return `'${text}' is not a port range within 1-65535`;
  return [lo, hi];
}

function cidr(text: string): BlockList | string {
  const [address, bits, extra] = text.split('/');
  const family = isIP(address ?? '');
  if (family === 0 || extra !== undefined) return `'${text}' is not an IP address or CIDR`;
  const max = family === 4 ? 32 : 128;
  const prefix = bits === undefined ? max : /^\d{1,3}$/.test(bits) ? Number(bits) : NaN;
  if (!(prefix >= 0 && prefix <= max)) return `'${text}' has a prefix length outside 0-${max}`;
  const list = new BlockList();
  list.addSubnet(address as string, prefix, family === 4 ? 'ipv4' : 'ipv6');
  return list;
}

function namePattern(text: string): AddressPattern['host'] | string {
  const lower = text.toLowerCase().replace(/\.$/, '');
  if (lower === '*') return { kind: 'any' };
  const domain = lower.startsWith('*.');
  const name = domain ? lower.slice(2) : lower;
  const labels = name.split('.');
  if (name.length === 0 || name.length > 253 || !labels.every((l) => LABEL.test(l))) return `'${text}' is not a host name, '*.' and a domain, or '*'`;
  return domain ? { kind: 'domain', suffix: `.${name}` } : { kind: 'name', name };
}

/** The pattern `text` stands for, or why it is not one (a sentence for a policy issue). */
export function parseAddressPattern(text: string): AddressPattern | { readonly error: string } {
  let hostText: string;
  let portText: string | undefined;
  const bracketed = /^\[([^\]]+)\](?::(.+))?$/.exec(text);
  if (bracketed) {
    hostText = bracketed[1] as string;
    portText = bracketed[2];
  } else if ((text.match(/:/g) ?? []).length > 1) {
    hostText = text; // a bare IPv6 address or CIDR: no port without brackets
  } else {
    const cut = text.lastIndexOf(':');
    hostText = cut < 0 ? text : text.slice(0, cut);
    portText = cut < 0 ? undefined : text.slice(cut + 1);
  }
  const ports = parsePorts(portText);
  if (typeof ports === 'string') return { error: ports };
  const looksNumeric = /^[0-9.]+(\/\d+)?$/.test(hostText) || hostText.includes(':');
  if (looksNumeric || bracketed) {
    const list = cidr(hostText);
    return typeof list === 'string' ? { error: list } : { text, host: { kind: 'cidr', list }, ports };
  }
  const host = namePattern(hostText);
  return typeof host === 'string' ? { error: host } : { text, host, ports };
}

/**
 * An upstream host as the guard compares it: an address (with its family, and its SocketAddress when the
 * caller checks it often: BlockList parses a text address again on every check) or a lower-case name.
 */
export type UpstreamHost = { readonly ip: string; readonly family: 'ipv4' | 'ipv6'; readonly socket?: SocketAddress } | { readonly name: string };

/** True when the pattern's port part covers this port. */
export function portMatches(pattern: AddressPattern, port: number): boolean {
  return !pattern.ports || (port >= pattern.ports[0] && port <= pattern.ports[1]);
}

/** True when the pattern covers this host and port (any port when `port` is undefined: the host part alone). */
export function patternMatches(pattern: AddressPattern, host: UpstreamHost, port: number | undefined): boolean {
  if (port !== undefined && !portMatches(pattern, port)) return false;
  const h = pattern.host;
  if (h.kind === 'any') return true;
  if ('ip' in host) return h.kind === 'cidr' && (host.socket ? h.list.check(host.socket) : h.list.check(host.ip, host.family));
  if (h.kind === 'name') return host.name === h.name;
  if (h.kind === 'domain') return host.name.endsWith(h.suffix);
  return false;
}
