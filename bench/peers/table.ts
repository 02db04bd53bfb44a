import type { RateLimitRow } from './ratelimit.js';
import type { ChangeKind, ChangeResult, SideResult } from './xds.js';

/** Side-by-side tables in Markdown, one column per (side, streams). */

const ms = (v: number | undefined): string => (v === undefined ? '-' : v >= 100 ? `${Math.round(v).toLocaleString('en-US')} ms` : `${v.toFixed(1)} ms`);
const mb = (v: number): string => `${Math.round(v)} MB`;
const bytes = (v: number): string => (v >= 1e6 ? `${(v / 1e6).toFixed(2)} MB` : v >= 1e3 ? `${(v / 1e3).toFixed(1)} KB` : `${Math.round(v)} B`);

function markdown(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]): string => `| ${cells.map((c, i) => (i === 0 ? c.padEnd(widths[i] ?? 0) : c.padStart(widths[i] ?? 0))).join(' | ')} |`;
  return [line(header), `|${widths.map((w, i) => (i === 0 ? `${'-'.repeat(w + 2)}` : `${'-'.repeat(w + 1)}:`)).join('|')}|`, ...rows.map(line)].join('\n');
}

const CHANGE_NAMES: Record<ChangeKind, string> = {
  registry: 'registry change (challenger alias moved on every model)',
  policy: 'policy edit (one model file, canary 10% -> 20%)',
};

/** The xDS comparison for one model count: every stream count, go-control-plane beside Flowgate. */
export function xdsTable(results: readonly SideResult[], changes: readonly ChangeKind[]): string {
  const columns = [...results].sort((a, b) => a.streams - b.streams || (a.side === 'go-control-plane' ? -1 : 1));
  const header = ['figure', ...columns.map((r) => `${r.side === 'flowgate' ? 'Flowgate' : 'go-control-plane'} ×${r.streams.toLocaleString('en-US')}`)];
  const reference = (r: SideResult): SideResult | undefined => results.find((o) => o.side === 'go-control-plane' && o.streams === r.streams);
  const rows: string[][] = [];
  const row = (name: string, cell: (r: SideResult) => string): void => {
    rows.push([name, ...columns.map(cell)]);
  };
  row('resources served', (r) => String(r.resources));
  row('same config as go-control-plane (canonical digest)', (r) => {
    const ref = reference(r);
    if (!ref || ref === r) return r.side === 'go-control-plane' ? 'reference' : '-';
    const same = ['CDS', 'EDS', 'LDS', 'RDS'].every((t) => r.digests[t]?.canonicalSha256 === ref.digests[t]?.canonicalSha256);
    const identical = ['CDS', 'EDS', 'LDS', 'RDS'].every((t) => r.digests[t]?.sha256 === ref.digests[t]?.sha256);
    return same ? (identical ? 'yes, byte-identical' : 'yes') : 'NO';
  });
  row('streams synced', (r) => `${r.sync.synced}/${r.streams}${r.streamErrors > 0 ? ` (${r.streamErrors} errors)` : ''}`);
  row('connect + initial sync, all streams', (r) => ms(r.sync.wallMs));
  row('initial sync per stream p99', (r) => ms(r.sync.perStreamMs.p99));
  row('initial sync bytes per stream', (r) => bytes(r.sync.bytesPerStream.mean));
  row('server RSS, no stream', (r) => mb(r.rssNoStreamsMb));
  row('server RSS, streams synced', (r) => mb(r.rssSyncedMb));
  for (const kind of changes) {
    rows.push([`**${CHANGE_NAMES[kind]}**`, ...columns.map(() => '')]);
    const change = (r: SideResult): ChangeResult | undefined => r.changes.find((c) => c.kind === kind);
    const cell = (f: (c: ChangeResult) => string) => (r: SideResult) => {
      const c = change(r);
      return c ? f(c) : '-';
    };
    row('streams holding the new config (by digest)', cell((c) => `${c.streamsComplete}/${c.streamsUpdated}`));
    row('trigger -> first push (first stream)', cell((c) => ms(c.firstResponseMs.min)));
    row('trigger -> first push p50', cell((c) => ms(c.firstResponseMs.p50)));
    if (kind === 'registry') row('MLflow poll -> first push (poll wait excluded)', cell((c) => ms(c.pollToFirstResponseMs)));
    row('trigger -> all ACKed p50', cell((c) => ms(c.completeMs.p50)));
    row('trigger -> all ACKed p99', cell((c) => ms(c.completeMs.p99)));
    row('trigger -> all ACKed max', cell((c) => ms(c.completeMs.max)));
    row('first push -> last ACK (fan-out)', cell((c) => ms(c.fanOutMs)));
    row('bytes pushed per stream', cell((c) => bytes(c.bytesPerStream.mean)));
    row('responses per stream', cell((c) => Object.entries(c.responsesByType).map(([t, n]) => `${t}×${+(n / Math.max(1, c.streamsUpdated)).toFixed(2)}`).join(' ')));
    row('server RSS before -> peak', cell((c) => `${mb(c.rssBeforeMb)} -> ${mb(c.rssPeakMb)}`));
    row('server CPU, trigger to report', cell((c) => `${c.cpuSeconds.toFixed(2)} s`));
    row('client (ads-load) CPU, same window', cell((c) => `${c.clientCpuSeconds.toFixed(2)} s`));
  }
  return markdown(header, rows);
}

/** The rate-limit comparison: one column per (side, in flight). */
export function rateLimitTable(rows: readonly RateLimitRow[]): string {
  // Stable: for each in-flight value the reference first, then Flowgate's variants in the order they ran.
  const columns = rows.map((r, i) => ({ r, i })).sort((a, b) => a.r.inFlight - b.r.inFlight || (a.r.side === 'flowgate' ? 1 : 0) - (b.r.side === 'flowgate' ? 1 : 0) || a.i - b.i).map((c) => c.r);
  const name = (r: RateLimitRow): string => (r.side === 'flowgate' ? `Flowgate${r.variant ? ` (${r.variant})` : ''}` : 'envoyproxy/ratelimit');
  const header = ['figure', ...columns.map((r) => `${name(r)} @${r.inFlight}`)];
  const out: string[][] = [];
  const row = (name: string, cell: (r: RateLimitRow) => string): void => {
    out.push([name, ...columns.map(cell)]);
  };
  row('ShouldRateLimit calls/s', (r) => r.rps.toLocaleString('en-US'));
  row('latency p50 / p99', (r) => `${r.latencyMs.p50.toFixed(2)} / ${r.latencyMs.p99.toFixed(2)} ms`);
  row('server CPU per call', (r) => `${Math.round(r.cpuPerCallUs)} µs`);
  row('server CPU (cores busy)', (r) => (r.serverCpuSeconds / r.seconds).toFixed(2));
  row('ghz CPU (cores busy)', (r) => (r.ghzCpuSeconds / r.seconds).toFixed(2));
  row('server RSS peak / after', (r) => `${mb(r.rssPeakMb)} / ${mb(r.rssAfterMb)}`);
  row('Redis counters = calls', (r) => (r.countedInRedis === r.calls ? `yes (${r.calls.toLocaleString('en-US')})` : `NO: ${r.countedInRedis} of ${r.calls}`));
  row('next call: OK with the remaining count', (r) => (r.probe.code === 'OK' && r.probe.remaining === r.probe.expectedRemaining ? 'yes' : `NO: ${r.probe.code}, ${r.probe.remaining} (expected ${r.probe.expectedRemaining})`));
  row('errors', (r) => {
    const n = Object.values(r.errors).reduce((a, b) => a + b, 0);
    return n === 0 ? '0' : `${n}: ${Object.keys(r.errors)[0]?.slice(0, 60) ?? ''}`;
  });
  return markdown(header, out);
}
