import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { PrometheusWindowSource, promString, windowQueries } from '../../src/traffic/prometheus-source.js';

/**
 * The Prometheus metric source against a stub HTTP server that speaks the Prometheus query API
 * (GET /api/v1/query?query=&time=, answering {status, data: {resultType: vector, result}}): not a real
 * Prometheus, whose scraping and PromQL are its own; what is tested is the queries Flowgate sends and how it
 * reads every shape of answer.
 */

let server: Server;
let base: string;
const asked: { query: string; time: string }[] = [];
let answer: (query: string) => unknown = () => ({ status: 'success', data: { resultType: 'vector', result: [] } });

const vector = (v: string): unknown => ({ status: 'success', data: { resultType: 'vector', result: [{ metric: {}, value: [1700000000, v] }] } });

beforeAll(async () => {
  server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://stub');
    if (url.pathname !== '/api/v1/query') {
      res.writeHead(404).end();
      return;
    }
    const query = url.searchParams.get('query') ?? '';
    asked.push({ query, time: url.searchParams.get('time') ?? '' });
    const body = answer(query);
    res.writeHead((body as { status?: string }).status === 'error' ? 400 : 200, { 'content-type': 'application/json' });
    res.end(JSON.stringify(body));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(() => new Promise<void>((r) => server.close(() => r())));

describe('Prometheus window source (stub query API)', () => {
  test('the PromQL it sends: increase over the window, summed over replicas, quantiles from buckets', () => {
    const q = windowQueries('fraud', '2', '30s');
    expect(q.requests).toBe('sum(increase(flowgate_model_requests_total{model="fraud",version="2"}[30s]))');
    expect(q.errors5xx).toBe('sum(increase(flowgate_model_requests_total{model="fraud",version="2",code_class=~"5xx|0"}[30s]))');
    expect(q.p99).toBe('histogram_quantile(0.99, sum by (le) (increase(flowgate_model_request_duration_seconds_bucket{model="fraud",version="2"}[30s])))');
    expect(q.ttft95).toContain('flowgate_model_time_to_first_byte_seconds_bucket');
    expect(q.cost).toBe('sum(increase(flowgate_llm_cost_total{model="fraud",version="2"}[30s]))');
    expect(promString('a"b\\c')).toBe('"a\\"b\\\\c"');
  });

  test('a window from seven instant queries at its end, seconds turned into ms, counts rounded', async () => {
    asked.length = 0;
    answer = (query) => {
      if (query.startsWith('histogram_quantile(0.5,')) return vector('0.012');
      if (query.startsWith('histogram_quantile(0.99,')) return vector('0.25');
      if (query.startsWith('histogram_quantile(0.95,')) return vector('NaN');
      if (query.includes('code_class=~')) return vector('10.4');
      if (query.includes('code_class="4xx"')) return { status: 'success', data: { resultType: 'vector', result: [] } };
      if (query.includes('flowgate_llm_cost_total')) return vector('3');
      return vector('199.6');
    };
    const w = await new PrometheusWindowSource({ url: `${base}/` }).window('fraud', '2', 1_700_000_000_000 - 30_000, 1_700_000_000_000);
    expect(w).toEqual({ requests: 200, errors5xx: 10, errors4xx: 0, latencyP50Ms: 12, latencyP99Ms: 250, ttftP95Ms: null, costPerRequest: 3 / 199.6 });
    expect(asked).toHaveLength(7);
    expect(new Set(asked.map((a) => a.time))).toEqual(new Set(['1700000000.000']));
    expect(asked.every((a) => a.query.includes('[30s]'))).toBe(true);
  });

  test('a PromQL error, a non-vector answer and an unreachable server are errors, not zeros', async () => {
    answer = () => ({ status: 'error', errorType: 'bad_data', error: 'parse error at char 5' });
    await expect(new PrometheusWindowSource({ url: base }).scalar('x', 1)).rejects.toThrow(/bad_data: parse error at char 5/);
    answer = () => ({ status: 'success', data: { resultType: 'matrix', result: [] } });
    await expect(new PrometheusWindowSource({ url: base }).scalar('x', 1)).rejects.toThrow(/expected a vector/);
    answer = () => ({ status: 'success', data: { resultType: 'vector', result: [{ value: [1, '1'] }, { value: [1, '2'] }] } });
    await expect(new PrometheusWindowSource({ url: base }).scalar('x', 1)).rejects.toThrow(/expected one sample, got 2/);
    await expect(new PrometheusWindowSource({ url: 'http://127.0.0.1:1', timeoutMs: 500 }).scalar('x', 1)).rejects.toThrow(/Prometheus did not answer/);
  });
});
