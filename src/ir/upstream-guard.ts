import { isIP, SocketAddress } from 'node:net';
import { parseAddressPattern, patternMatches, portMatches, type AddressPattern, type UpstreamHost } from '../policy/address-pattern.js';
import type { GatewayPolicy } from '../policy/schema/index.js';
import { untrusted } from '../observability/untrusted.js';
import type { UpstreamAddress } from './types.js';

/**
 * Which upstream addresses a model version may be served at. A version's address comes from a registry tag
 * (anyone who can write MLflow tags) or an address template, and a public route sends callers' requests there;
 * so an address that would reach the gateway's own machinery is refused, and the version is not live:
 *
 * - always: the unspecified addresses (0.0.0.0/8, ::, which connect to the local host), link-local ranges
 *   (169.254.0.0/16, fe80::/10: every cloud's metadata service lives there), other metadata addresses
 *   (fd00:ec2::254, 100.100.100.200, their NAT64 forms) and names (metadata.google.internal, ...);
 * - on loopback (127.0.0.0/8, ::1, localhost): Envoy's admin port (Gateway.upstreams.envoyAdminPort),
 *   Flowgate's well-known ports, the ports of the gateway's listeners and of the filter service and tracer,
 *   and the ports the control plane itself listens on (given by the process: the IR only knows the policy);
 * - exactly: the filter service, the tracer, listeners bound to one address, the control plane's addresses;
 * - whatever `Gateway.upstreams.deny` adds; and, when `Gateway.upstreams.allow` is set, whatever it does not list.
 *
 * Numeric host names (2130706433, 0x7f.1, 127.1) are refused: resolvers read them as addresses that no
 * pattern above would recognise. DNS names are matched as names; Envoy resolves them itself, later, so a name
 * the registry controls can still resolve anywhere: restrict names with `allow` to zones you control.
 */

/** An address of Flowgate's own that no model version may use (the control plane passes its listen addresses). */
export interface ReservedAddress {
  readonly host: string;
  readonly port: number;
  /** What listens there, for the alert: "the control plane's xDS port". */
  readonly what: string;
}

/** The Envoy admin port the generated bootstraps use, when the Gateway does not say another. */
export const DEFAULT_ENVOY_ADMIN_PORT = 9901;

/** Flowgate's well-known ports (src/cli/defaults.ts): xDS, filter service, control plane admin, filter service admin. */
export const FLOWGATE_PORTS: readonly ReservedAddress[] = [
  { host: '127.0.0.1', port: 18000, what: "the control plane's default xDS port" },
  { host: '127.0.0.1', port: 18081, what: "the filter service's default port" },
  { host: '127.0.0.1', port: 18090, what: "the control plane's default admin port" },
  { host: '127.0.0.1', port: 18091, what: "the filter service's default admin port" },
];

const ALWAYS_DENIED: readonly [string, string][] = [
  ['0.0.0.0/8', 'an unspecified address (it reaches the local host)'],
  ['::/128', 'an unspecified address (it reaches the local host)'],
  ['169.254.0.0/16', 'link-local (cloud metadata services)'],
  ['fe80::/10', 'link-local'],
  ['fd00:ec2::254/128', 'the AWS metadata service'],
  ['100.100.100.200/32', 'the Alibaba Cloud metadata service'],
  ['64:ff9b::a9fe:0/112', 'link-local through NAT64 (cloud metadata services)'],
  ['64:ff9b::6464:64c8/128', 'the Alibaba Cloud metadata service through NAT64'],
  ['metadata.google.internal', 'a cloud metadata service'],
  ['metadata.goog', 'a cloud metadata service'],
  ['metadata', 'a cloud metadata service'],
  ['instance-data', 'a cloud metadata service'],
  ['instance-data.ec2.internal', 'a cloud metadata service'],
  ['metadata.tencentyun.com', 'a cloud metadata service'],
];

const LOOPBACK_NAMES = new Set(['localhost', 'localhost.localdomain', 'ip6-localhost', 'ip6-loopback']);
const WILDCARD_ADDRESSES = new Set(['0.0.0.0', '::']);

interface Rule {
  readonly pattern: AddressPattern;
  readonly why: string;
}

/** Decides whether a version's upstream address may be used. */
export interface UpstreamGuard {
  /** Undefined when the address may be used; otherwise why not, as a sentence. */
  refusal(address: UpstreamAddress): string | undefined;
}

function rule(text: string, why: string): Rule {
  const pattern = parseAddressPattern(text);
  // Every built-in and generated pattern is well-formed; a policy pattern was checked by the schema.
  if ('error' in pattern) throw new Error(`address pattern ${text}: ${pattern.error}`);
  return { pattern, why };
}

/** Patterns for host:port: loopback and unspecified when `host` is a wildcard or loopback, and `host` itself otherwise. */
function rulesFor(host: string, port: number, why: string): Rule[] {
  const out = [rule(`127.0.0.0/8:${port}`, why), rule(`[::1]:${port}`, why)];
  const lower = host.toLowerCase();
  if (WILDCARD_ADDRESSES.has(lower) || LOOPBACK_NAMES.has(lower)) return out;
  out.push(rule(isIP(host) === 6 ? `[${host}]:${port}` : `${host}:${port}`, why));
  return out;
}

/** The hosts an upstream host stands for when matched: a loopback name is also its addresses. */
function hostsOf(host: string): UpstreamHost[] | string {
  const family = isIP(host);
  if (family !== 0) return [ipHost(host, family === 4 ? 'ipv4' : 'ipv6')];
  const name = host.toLowerCase().replace(/\.$/, '');
  const last = name.split('.').at(-1) ?? '';
  if (/^\d+$/.test(last) || /^0x[0-9a-f]*$/.test(last)) return 'a numeric host name (read as an address by resolvers)';
  if (LOOPBACK_NAMES.has(name) || name.endsWith('.localhost')) {
    return [{ name }, ipHost('127.0.0.1', 'ipv4'), ipHost('::1', 'ipv6')];
  }
  return [{ name }];
}

/**
 * An address host with its SocketAddress made once: a CIDR check given the address as text parses it again
 * (about 4 µs), one given the SocketAddress does not (a cold build checks each address against ~30 rules).
 */
function ipHost(ip: string, family: 'ipv4' | 'ipv6'): UpstreamHost {
  return { ip, family, socket: new SocketAddress({ address: ip, family }) };
}

/** What the rules say about one host, ports aside: why it is refused whatever the port, or the rules its host part matches (in order). */
type HostMatch = string | { readonly denied: readonly Rule[]; readonly allowed: readonly Rule[] };

/** The guard for a Gateway, with the addresses the process reserves for itself. */
export function upstreamGuard(gateway: GatewayPolicy, reserved: readonly ReservedAddress[] = []): UpstreamGuard {
  const deny: Rule[] = ALWAYS_DENIED.map(([text, why]) => rule(text, why));
  const adminPort = gateway.upstreams?.envoyAdminPort ?? DEFAULT_ENVOY_ADMIN_PORT;
  deny.push(...rulesFor('127.0.0.1', adminPort, "Envoy's admin port"));
  for (const r of [...FLOWGATE_PORTS, ...reserved]) deny.push(...rulesFor(r.host, r.port, r.what));
  for (const l of gateway.listeners) deny.push(...rulesFor(l.address, l.port, `the gateway's listener '${l.name}'`));
  deny.push(...rulesFor(gateway.filterService.address, gateway.filterService.port, 'the filter service'));
  if (gateway.tracing) deny.push(...rulesFor(gateway.tracing.otlp.address, gateway.tracing.otlp.port, 'the tracing collector'));
  for (const text of gateway.upstreams?.deny ?? []) deny.push(rule(text, `Gateway.upstreams.deny '${text}'`));
  const allow = (gateway.upstreams?.allow ?? []).map((text) => rule(text, ''));
  // Per distinct host (a registry has a few versions per host, each checked on every build the guard serves):
  // the rules whose host part matches, so a version's check is a port comparison per rule left.
  const byHost = new Map<string, HostMatch>();
  const matchOf = (host: string): HostMatch => {
    let match = byHost.get(host);
    if (match === undefined) {
      const hosts = hostsOf(host);
      if (typeof hosts === 'string') match = hosts;
      else {
        const covers = (r: Rule): boolean => hosts.some((h) => patternMatches(r.pattern, h, undefined));
        match = { denied: deny.filter(covers), allowed: allow.filter(covers) };
      }
      byHost.set(host, match);
    }
    return match;
  };
  return {
    refusal: ({ host, port }) => {
      const match = matchOf(host);
      const shown = (): string => `${isIP(host) === 6 ? `[${host}]` : untrusted(host, 100) ?? ''}:${port}`;
      if (typeof match === 'string') return `upstream ${shown()} refused: ${match}`;
      const denied = match.denied.find((r) => portMatches(r.pattern, port));
      if (denied) return `upstream ${shown()} refused: ${denied.why}`;
      if (allow.length > 0 && !match.allowed.some((r) => portMatches(r.pattern, port))) {
        return `upstream ${shown()} refused: not in Gateway.upstreams.allow`;
      }
      return undefined;
    },
  };
}
