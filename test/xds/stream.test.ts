import { describe, expect, test } from 'vitest';
import { decodeMessage } from '../../src/proto/codec.js';
import { DeltaStream } from '../../src/xds/stream/delta.js';
import { TypeUrl } from '../../src/resources/types.js';
import { setVersion, Snapshot } from '../../src/xds/snapshot.js';
import { SotwStream } from '../../src/xds/stream/sotw.js';
import { internNames, type StreamIdentity, type StreamObserver } from '../../src/xds/stream/state.js';
import type { DeltaDiscoveryRequest, DiscoveryRequest } from '../../src/xds/wire.js';
import { edsCluster, endpoints, httpListener, routeTo } from './resources.js';

/**
 * The stream protocol without a network: requests in, decoded responses out. Envoy's behaviour is proven in
 * the conformance tests; these pin the protocol rules down one by one.
 */

interface SotwResponse {
  version_info: string;
  type_url: string;
  nonce: string;
  resources: { type_url: string }[];
}
interface DeltaResponse {
  system_version_info: string;
  type_url: string;
  nonce: string;
  resources: { name: string; version: string }[];
  removed_resources: string[];
}

const identity = (transport: 'sotw' | 'delta', ads = true): StreamIdentity => ({
  id: 1,
  transport,
  ads,
  ...(ads ? {} : { serviceType: TypeUrl.Cluster }),
  peer: 'test',
  controlPlaneId: 'test',
});

function recorder() {
  const events: string[] = [];
  const observer: StreamObserver = {
    onPush: (_s, t, v) => events.push(`push ${t.split('.').pop()} ${v}`),
    onAck: (_s, t, v) => events.push(`ack ${t.split('.').pop()} ${v}`),
    onNack: (_s, t, v, d) => events.push(`nack ${t.split('.').pop()} ${v} ${d}`),
  };
  return { events, observer };
}

function sotwStream(ads = true) {
  const out: SotwResponse[] = [];
  const { events, observer } = recorder();
  const stream = new SotwStream(identity('sotw', ads), observer, (b) => out.push(decodeMessage<SotwResponse>('envoy.service.discovery.v3.DiscoveryResponse', b)));
  stream.node = { id: 'n', cluster: 'c', metadata: {}, userAgent: 'test' };
  const req = (typeUrl: string, names: string[] = [], nonce = '', version = '', error?: string): DiscoveryRequest => ({
    type_url: typeUrl,
    resource_names: names,
    response_nonce: nonce,
    version_info: version,
    node: null,
    error_detail: error ? { code: 3, message: error } : null,
  });
  return { stream, out, events, req };
}

function deltaStream() {
  const out: DeltaResponse[] = [];
  const { events, observer } = recorder();
  const stream = new DeltaStream(identity('delta'), observer, (b) => out.push(decodeMessage<DeltaResponse>('envoy.service.discovery.v3.DeltaDiscoveryResponse', b)));
  stream.node = { id: 'n', cluster: 'c', metadata: {}, userAgent: 'test' };
  const req = (typeUrl: string, r: Partial<DeltaDiscoveryRequest> = {}): DeltaDiscoveryRequest => ({
    type_url: typeUrl,
    resource_names_subscribe: [],
    resource_names_unsubscribe: [],
    initial_resource_versions: {},
    response_nonce: '',
    error_detail: null,
    node: null,
    ...r,
  });
  return { stream, out, events, req };
}

const snap = (clusters: string[], route = 'c1') =>
  Snapshot.from([
    httpListener('l1', 10000, 'r1', 'ads'),
    routeTo('r1', route),
    ...clusters.flatMap((c) => [edsCluster(c, 'ads'), endpoints(c, [9000])]),
  ]);

describe('state-of-the-world streams', () => {
  test('a wildcard full-state type is answered even when empty; a named type with nothing is not', () => {
    const { stream, out, req } = sotwStream();
    stream.setSnapshot(Snapshot.empty());
    stream.handleRequest(req(TypeUrl.Cluster));
    expect(out).toHaveLength(1);
    expect(out[0]?.resources).toEqual([]);
    stream.handleRequest(req(TypeUrl.ClusterLoadAssignment, ['missing']));
    expect(out).toHaveLength(1);
  });

  test('version_info is the content hash of the set; an ACK settles it; a stale nonce is ignored', () => {
    const { stream, out, events, req } = sotwStream(false);
    const s1 = snap(['c1']);
    stream.setSnapshot(s1);
    stream.handleRequest(req(TypeUrl.Cluster));
    expect(out[0]?.version_info).toBe(s1.typeVersion(TypeUrl.Cluster));
    stream.handleRequest(req(TypeUrl.Cluster, [], 'stale-nonce', '', 'ignored error'));
    expect(events.filter((e) => e.startsWith('nack'))).toEqual([]);
    stream.handleRequest(req(TypeUrl.Cluster, [], out[0]?.nonce, out[0]?.version_info));
    expect(events).toContain(`ack Cluster ${s1.typeVersion(TypeUrl.Cluster)}`);
  });

  test('a NACKed version is not sent again until the snapshot changes', () => {
    const { stream, out, events, req } = sotwStream(false);
    stream.setSnapshot(snap(['c1']));
    stream.handleRequest(req(TypeUrl.Cluster));
    stream.handleRequest(req(TypeUrl.Cluster, [], out[0]?.nonce, out[0]?.version_info));
    const bad = snap(['c1', 'c2']);
    stream.setSnapshot(bad);
    expect(out).toHaveLength(2);
    stream.handleRequest(req(TypeUrl.Cluster, [], out[1]?.nonce, out[0]?.version_info, 'cluster c2 is bad'));
    expect(events.at(-1)).toBe(`nack Cluster ${bad.typeVersion(TypeUrl.Cluster)} cluster c2 is bad`);
    stream.setSnapshot(bad);
    stream.handleRequest(req(TypeUrl.Cluster, [], out[1]?.nonce, out[0]?.version_info));
    expect(out).toHaveLength(2);
    const fixed = snap(['c1', 'c3']);
    stream.setSnapshot(fixed);
    expect(out).toHaveLength(3);
    expect(out[2]?.version_info).toBe(fixed.typeVersion(TypeUrl.Cluster));
  });

  test('a reconnecting client that reports the current version is sent nothing', () => {
    const { stream, out, req } = sotwStream(false);
    const s = snap(['c1']);
    stream.setSnapshot(s);
    stream.handleRequest(req(TypeUrl.Cluster, [], '', s.typeVersion(TypeUrl.Cluster)));
    expect(out).toHaveLength(0);
    stream.handleRequest(req(TypeUrl.Cluster, [], '', 'some-older-version'));
    expect(out).toHaveLength(0);
    const other = sotwStream(false);
    other.stream.setSnapshot(s);
    other.stream.handleRequest(other.req(TypeUrl.Cluster, [], 'nonce-from-an-old-stream', 'some-older-version'));
    expect(other.out).toHaveLength(1);
  });

  test('an endpoint or route response carries what changed since the set the client holds; clusters stay whole', () => {
    const { stream, out, req } = sotwStream();
    const names = (r: SotwResponse): string[] =>
      r.resources.map((a) => decodeMessage<{ cluster_name: string }>('envoy.config.endpoint.v3.ClusterLoadAssignment', (a as unknown as { value: Uint8Array }).value).cluster_name);
    const at = (ports: Record<string, number>): Snapshot =>
      Snapshot.from([httpListener('l1', 10000, 'r1', 'ads'), routeTo('r1', 'c1'), ...Object.entries(ports).flatMap(([c, port]) => [edsCluster(c, 'ads'), endpoints(c, [port])])]);
    const s1 = at({ c1: 9001, c2: 9002, c3: 9003 });
    stream.setSnapshot(s1);
    stream.handleRequest(req(TypeUrl.ClusterLoadAssignment, ['c1', 'c2']));
    expect(names(out[0] as SotwResponse)).toEqual(['c1', 'c2']);
    stream.handleRequest(req(TypeUrl.ClusterLoadAssignment, ['c1', 'c2'], out[0]?.nonce, out[0]?.version_info));
    // c2's endpoints move: only c2 is sent, under the version of the whole set.
    const s2 = at({ c1: 9001, c2: 9012, c3: 9003 });
    stream.setSnapshot(s2);
    expect(out).toHaveLength(2);
    expect(names(out[1] as SotwResponse)).toEqual(['c2']);
    const whole = sotwStream();
    whole.stream.setSnapshot(s2);
    whole.stream.handleRequest(whole.req(TypeUrl.ClusterLoadAssignment, ['c1', 'c2']));
    expect(out[1]?.version_info).toBe(whole.out[0]?.version_info);
    // A NACK leaves the client with what it held: the next change is diffed against that, not the refused set.
    stream.handleRequest(req(TypeUrl.ClusterLoadAssignment, ['c1', 'c2'], out[1]?.nonce, out[0]?.version_info, 'bad endpoints'));
    stream.setSnapshot(at({ c1: 9021, c2: 9002, c3: 9003 }));
    expect(names(out[2] as SotwResponse)).toEqual(['c1']);
    stream.handleRequest(req(TypeUrl.ClusterLoadAssignment, ['c1', 'c2'], out[2]?.nonce, out[2]?.version_info));
    // A newly subscribed name is sent on its own; a change of every held name sends the whole set.
    stream.handleRequest(req(TypeUrl.ClusterLoadAssignment, ['c1', 'c2', 'c3'], out[2]?.nonce, out[2]?.version_info));
    expect(names(out[3] as SotwResponse)).toEqual(['c3']);
    stream.handleRequest(req(TypeUrl.ClusterLoadAssignment, ['c1', 'c2', 'c3'], out[3]?.nonce, out[3]?.version_info));
    stream.setSnapshot(at({ c1: 9031, c2: 9032, c3: 9033 }));
    expect(names(out[4] as SotwResponse)).toEqual(['c1', 'c2', 'c3']);
    // Clusters are always the whole set.
    const cds = sotwStream();
    cds.stream.setSnapshot(s1);
    cds.stream.handleRequest(cds.req(TypeUrl.Cluster));
    cds.stream.handleRequest(cds.req(TypeUrl.Cluster, [], cds.out[0]?.nonce, cds.out[0]?.version_info));
    cds.stream.setSnapshot(at({ c1: 9001, c2: 9002, c3: 9003, c4: 9004 }));
    expect(cds.out[1]?.resources).toHaveLength(4);
  });

  test('ADS applies a change as CDS (old clusters kept) with EDS, then LDS/RDS, then removes old clusters', () => {
    const { stream, out, req } = sotwStream(true);
    const subscribed: Record<string, string[]> = { [TypeUrl.ClusterLoadAssignment]: ['c1'], [TypeUrl.RouteConfiguration]: ['r1'] };
    const ack = (i: number) => {
      const r = out[i];
      if (!r) throw new Error(`no response ${i}`);
      stream.handleRequest(req(r.type_url, subscribed[r.type_url] ?? [], r.nonce, r.version_info));
    };
    stream.setSnapshot(snap(['c1'], 'c1'));
    stream.handleRequest(req(TypeUrl.Cluster));
    ack(0);
    stream.handleRequest(req(TypeUrl.ClusterLoadAssignment, ['c1']));
    ack(1);
    stream.handleRequest(req(TypeUrl.Listener));
    ack(2);
    stream.handleRequest(req(TypeUrl.RouteConfiguration, ['r1']));
    ack(3);
    expect(out.map((r) => r.type_url.split('.').pop())).toEqual(['Cluster', 'ClusterLoadAssignment', 'Listener', 'RouteConfiguration']);

    // c1 -> c2: c1 must stay until the route that used it has moved.
    const next = snap(['c2'], 'c2');
    stream.setSnapshot(next);
    expect(out).toHaveLength(5);
    expect(out[4]?.type_url).toBe(TypeUrl.Cluster);
    expect(out[4]?.resources).toHaveLength(2);
    // Envoy asks for c2's endpoints before acknowledging CDS (the cluster warms): answered at once.
    subscribed[TypeUrl.ClusterLoadAssignment] = ['c1', 'c2'];
    stream.handleRequest(req(TypeUrl.ClusterLoadAssignment, ['c1', 'c2'], out[1]?.nonce, out[1]?.version_info));
    expect(out[5]?.type_url).toBe(TypeUrl.ClusterLoadAssignment);
    // Nothing for listeners or routes while CDS and EDS are unacknowledged.
    expect(out).toHaveLength(6);
    ack(4);
    ack(5);
    expect(out[6]?.type_url).toBe(TypeUrl.RouteConfiguration);
    ack(6);
    // Routes moved: now the old cluster goes.
    expect(out[7]?.type_url).toBe(TypeUrl.Cluster);
    expect(out[7]?.version_info).toBe(next.typeVersion(TypeUrl.Cluster));
    expect(out[7]?.resources).toHaveLength(1);
  });
});

describe('delta streams', () => {
  test('sends only what changed and names what was removed', () => {
    const { stream, out, req } = deltaStream();
    stream.setSnapshot(snap(['c1', 'c2']));
    stream.handleRequest(req(TypeUrl.Cluster));
    expect(out[0]?.resources.map((r) => r.name).sort()).toEqual(['c1', 'c2']);
    stream.handleRequest(req(TypeUrl.Cluster, { response_nonce: out[0]?.nonce }));
    stream.setSnapshot(snap(['c2', 'c3']));
    // Retained on ADS until the rest is settled; here nothing else is subscribed, so removal follows the ACK.
    expect(out[1]?.resources.map((r) => r.name)).toEqual(['c3']);
    stream.handleRequest(req(TypeUrl.Cluster, { response_nonce: out[1]?.nonce }));
    expect(out[2]?.removed_resources).toEqual(['c1']);
    expect(out[2]?.resources).toEqual([]);
  });

  test('a reconnect with initial_resource_versions gets only the difference', () => {
    const s = snap(['c1', 'c2']);
    const { stream, out, req } = deltaStream();
    stream.setSnapshot(s);
    const c1 = s.get(TypeUrl.Cluster, 'c1')?.version ?? '';
    stream.handleRequest(req(TypeUrl.Cluster, { initial_resource_versions: { c1, c2: 'old', gone: 'x' } }));
    expect(out).toHaveLength(1);
    expect(out[0]?.resources.map((r) => r.name)).toEqual(['c2']);
    stream.handleRequest(req(TypeUrl.Cluster, { response_nonce: out[0]?.nonce }));
    expect(out[1]?.removed_resources).toEqual(['gone']);
  });

  test('a NACK restores what the client holds and blocks the same change', () => {
    const { stream, out, events, req } = deltaStream();
    stream.setSnapshot(snap(['c1']));
    stream.handleRequest(req(TypeUrl.Cluster));
    stream.handleRequest(req(TypeUrl.Cluster, { response_nonce: out[0]?.nonce }));
    stream.setSnapshot(snap(['c1', 'c2']));
    stream.handleRequest(req(TypeUrl.Cluster, { response_nonce: out[1]?.nonce, error_detail: { code: 3, message: 'no' } }));
    expect(events.at(-1)).toMatch(/^nack Cluster .* no$/);
    stream.setSnapshot(snap(['c1', 'c2']));
    expect(out).toHaveLength(2);
    stream.setSnapshot(snap(['c1', 'c3']));
    expect(out[2]?.resources.map((r) => r.name)).toEqual(['c3']);
  });

  test('named subscriptions: subscribe, unsubscribe, explicit wildcard', () => {
    const { stream, out, req } = deltaStream();
    stream.setSnapshot(snap(['c1', 'c2']));
    stream.handleRequest(req(TypeUrl.ClusterLoadAssignment, { resource_names_subscribe: ['c1'] }));
    expect(out[0]?.resources.map((r) => r.name)).toEqual(['c1']);
    stream.handleRequest(req(TypeUrl.ClusterLoadAssignment, { response_nonce: out[0]?.nonce, resource_names_subscribe: ['c2'], resource_names_unsubscribe: ['c1'] }));
    expect(out[1]?.resources.map((r) => r.name)).toEqual(['c2']);
    expect(out[1]?.removed_resources).toEqual([]);
    stream.handleRequest(req(TypeUrl.ClusterLoadAssignment, { response_nonce: out[1]?.nonce, resource_names_subscribe: ['*'] }));
    expect(out[2]?.resources.map((r) => r.name)).toEqual(['c1']);
  });
});

test('Snapshot versions are content hashes: equal inputs, equal versions; a changed resource changes its type only', () => {
  const a = snap(['c1']);
  const b = snap(['c1']);
  expect(a.version).toBe(b.version);
  expect(a.get(TypeUrl.Cluster, 'c1')?.version).toBe(b.get(TypeUrl.Cluster, 'c1')?.version);
  const c = snap(['c1'], 'c9');
  expect(c.typeVersion(TypeUrl.Cluster)).toBe(a.typeVersion(TypeUrl.Cluster));
  expect(c.typeVersion(TypeUrl.RouteConfiguration)).not.toBe(a.typeVersion(TypeUrl.RouteConfiguration));
  expect(setVersion(a.resources(TypeUrl.Cluster).values())).toBe(a.typeVersion(TypeUrl.Cluster));
  // An unchanged resource keeps its encoded bytes across snapshots.
  const d = Snapshot.from([edsCluster('c1', 'ads')], a);
  expect(d.get(TypeUrl.Cluster, 'c1')).toBe(a.get(TypeUrl.Cluster, 'c1'));
});

describe('streams with the same subscription share what they are sent', () => {
  test('two streams asking for the same EDS names (in any order) are sent the same set object; other names get their own', () => {
    const s1 = snap(['c1', 'c2', 'c3']);
    const ads = [sotwStream(), sotwStream(), sotwStream()];
    for (const x of ads) x.stream.setSnapshot(s1);
    ads[0]?.stream.handleRequest(ads[0].req(TypeUrl.ClusterLoadAssignment, ['c1', 'c2']));
    ads[1]?.stream.handleRequest(ads[1].req(TypeUrl.ClusterLoadAssignment, ['c2', 'c1']));
    ads[2]?.stream.handleRequest(ads[2].req(TypeUrl.ClusterLoadAssignment, ['c3']));
    const pendingSent = (x: ReturnType<typeof sotwStream> | undefined) => x?.stream.status().types.find((t) => t.typeUrl === TypeUrl.ClusterLoadAssignment)?.pending?.sent;
    const [p0, p1, p2] = ads.map(pendingSent);
    expect(p0?.size).toBe(2);
    expect(p1).toBe(p0);
    expect(p2).not.toBe(p0);
    expect([...(p2?.keys() ?? [])]).toEqual(['c3']);
    expect(ads[0]?.out[0]?.version_info).toBe(ads[1]?.out[0]?.version_info);
    expect(ads[2]?.out[0]?.version_info).not.toBe(ads[0]?.out[0]?.version_info);
  });

  test('a change that leaves a type alone leaves its shared set alone: a stream after it is sent the same set object', () => {
    // The same input objects for what does not change, as the translators' memos hand them over.
    const [listener, c1, c2, e2] = [httpListener('l1', 10000, 'r1', 'ads'), edsCluster('c1', 'ads'), edsCluster('c2', 'ads'), endpoints('c2', [9001])];
    const e1 = endpoints('c1', [9000]);
    const inputs = (route: string, port: number) => [listener, routeTo('r1', route), c1, port === 9000 ? e1 : endpoints('c1', [port]), c2, e2];
    const s1 = Snapshot.from(inputs('c1', 9000));
    const sent = (x: ReturnType<typeof sotwStream>) => x.stream.status().types.find((t) => t.typeUrl === TypeUrl.ClusterLoadAssignment)?.pending?.sent;
    const first = sotwStream();
    first.stream.setSnapshot(s1);
    first.stream.handleRequest(first.req(TypeUrl.ClusterLoadAssignment, ['c1', 'c2']));
    // The route moves, the endpoints do not: the snapshot keeps the endpoints' map, and the streams' set with it.
    const s2 = Snapshot.from(inputs('c2', 9000), s1);
    expect(s2.resources(TypeUrl.ClusterLoadAssignment)).toBe(s1.resources(TypeUrl.ClusterLoadAssignment));
    const second = sotwStream();
    second.stream.setSnapshot(s2);
    second.stream.handleRequest(second.req(TypeUrl.ClusterLoadAssignment, ['c2', 'c1']));
    expect(sent(second)).toBe(sent(first));
    expect(second.out[0]?.version_info).toBe(first.out[0]?.version_info);
    // The endpoints move: a new set, with the new endpoints and another version.
    const s3 = Snapshot.from(inputs('c2', 9100), s2);
    const third = sotwStream();
    third.stream.setSnapshot(s3);
    third.stream.handleRequest(third.req(TypeUrl.ClusterLoadAssignment, ['c1', 'c2']));
    expect(sent(third)).not.toBe(sent(first));
    expect(sent(third)?.get('c1')).toBe(s3.get(TypeUrl.ClusterLoadAssignment, 'c1'));
    expect(sent(third)?.get('c1')).not.toBe(s1.get(TypeUrl.ClusterLoadAssignment, 'c1'));
    expect(third.out[0]?.version_info).not.toBe(first.out[0]?.version_info);
  });

  test('equal name sets are interned: one set for every stream asking for the same names, in any order', () => {
    const a = internNames(new Set(['c1', 'c2']));
    expect(internNames(new Set(['c2', 'c1']))).toBe(a);
    expect(internNames(new Set(['c1', 'c3']))).not.toBe(a);
    expect([...internNames(new Set(['c2', 'c1']))].sort()).toEqual(['c1', 'c2']);
    expect(internNames(new Set()).size).toBe(0);
  });

  test('a stream that drops a name from a shared subscription changes only its own: the others keep it', () => {
    const s1 = snap(['c1', 'c2']);
    const [x, y] = [sotwStream(), sotwStream()];
    for (const z of [x, y]) {
      z.stream.setSnapshot(s1);
      z.stream.handleRequest(z.req(TypeUrl.ClusterLoadAssignment, ['c1', 'c2']));
    }
    const names = (z: ReturnType<typeof sotwStream>) => z.stream.status().types.find((t) => t.typeUrl === TypeUrl.ClusterLoadAssignment)?.names;
    y.stream.handleRequest(y.req(TypeUrl.ClusterLoadAssignment, ['c1'], y.out[0]?.nonce, y.out[0]?.version_info));
    expect(names(y)).toEqual(['c1']);
    expect(names(x)).toEqual(['c1', 'c2']);
    // A delta stream that starts from the same names and edits them leaves the shared set alone too.
    const d = deltaStream();
    d.stream.setSnapshot(s1);
    d.stream.handleRequest(d.req(TypeUrl.ClusterLoadAssignment, { resource_names_subscribe: ['c1', 'c2'] }));
    d.stream.handleRequest(d.req(TypeUrl.ClusterLoadAssignment, { resource_names_unsubscribe: ['c2'], response_nonce: d.out[0]?.nonce ?? '' }));
    expect(d.stream.status().types.find((t) => t.typeUrl === TypeUrl.ClusterLoadAssignment)?.names).toEqual(['c1']);
    expect(names(x)).toEqual(['c1', 'c2']);
    // c2's endpoints move: x, still subscribed to it, is sent them; y, which dropped it, is sent nothing.
    x.stream.handleRequest(x.req(TypeUrl.ClusterLoadAssignment, ['c1', 'c2'], x.out[0]?.nonce, x.out[0]?.version_info));
    y.stream.handleRequest(y.req(TypeUrl.ClusterLoadAssignment, ['c1'], y.out[1]?.nonce, y.out[1]?.version_info));
    const [xSent, ySent] = [x.out.length, y.out.length];
    const s2 = Snapshot.from([httpListener('l1', 10000, 'r1', 'ads'), routeTo('r1', 'c1'), edsCluster('c1', 'ads'), endpoints('c1', [9000]), edsCluster('c2', 'ads'), endpoints('c2', [9001])]);
    for (const z of [x, y]) z.stream.setSnapshot(s2);
    expect(x.out.length).toBe(xSent + 1);
    expect(x.out.at(-1)?.resources.length).toBe(1);
    expect(y.out.length).toBe(ySent);
  });
});
