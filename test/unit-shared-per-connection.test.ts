// Unit tests for the helpers that keep per-connection state small: request headers as a flat list, shared metric series.
import test from 'ava';
import { flatHeaders } from '../ztunnel/hbone/pool.js';
import { LABELS, Metrics, trafficLabels, type TrafficLabels } from '../ztunnel/telemetry/metrics.js';

test('flatHeaders: the same fields in the same order; list values one field each; undefined left out', (t) => {
  t.deepEqual(flatHeaders({ ':method': 'CONNECT', ':authority': '10.0.0.5:80', baggage: '', traceparent: 'tp' }), [
    ':method', 'CONNECT', ':authority', '10.0.0.5:80', 'baggage', '', 'traceparent', 'tp',
  ]);
  t.deepEqual(flatHeaders({ a: ['1', '2'], b: undefined, c: 3, d: [] }), ['a', '1', 'a', '2', 'c', '3']);
  t.deepEqual(flatHeaders({}), []);
});

const labels = (workload: string): TrafficLabels =>
  trafficLabels({ reporter: 'source', src: { workloadName: workload, namespace: 'shop' }, dst: {}, mtls: true });

test('Metrics.seriesOf: equal values give the series of the first labels object seen; different values their own', (t) => {
  const m = new Metrics();
  const first = labels('api');
  const s = m.seriesOf(first);
  t.is(s.labels, first);
  t.is(m.seriesOf(labels('api')), s);
  const other = labels('web');
  t.is(m.seriesOf(other).labels, other);
  t.not(m.seriesOf(labels('web')), s);
  // A value that differs in one label only, or whose text could be confused when joined, is another set.
  const tricky = { ...first, source_workload: 'api","shop' };
  t.is(m.seriesOf(tricky).labels, tricky);
  t.deepEqual(Object.keys(m.seriesOf(labels('api')).labels), [...LABELS]);
});

test('Metrics: each series is exported with its counts, at every scrape', async (t) => {
  const m = new Metrics();
  const count = (text: string, name: string, workload: string) =>
    Number(new RegExp(`^${name}\\{[^}]*source_workload="${workload}"[^}]*\\} (\\d+)$`, 'm').exec(text)?.[1]);
  for (let i = 0; i < 3; i++) {
    const s = m.seriesOf(labels('api'));
    m.connectionOpened(s);
    m.connectionClosed(s, 10, 20);
  }
  m.connectionOpened(m.seriesOf(labels('web')));
  let text = await m.registry.metrics();
  t.is(count(text, 'istio_tcp_connections_opened_total', 'api'), 3);
  t.is(count(text, 'istio_tcp_connections_closed_total', 'api'), 3);
  t.is(count(text, 'istio_tcp_received_bytes_total', 'api'), 30);
  t.is(count(text, 'istio_tcp_sent_bytes_total', 'api'), 60);
  t.is(count(text, 'istio_tcp_connections_opened_total', 'web'), 1);
  t.is(count(text, 'istio_tcp_connections_closed_total', 'web'), 0);
  // A second scrape reports the totals, not what changed since the first.
  m.connectionClosed(m.seriesOf(labels('web')), 5, 7);
  text = await m.registry.metrics();
  t.is(count(text, 'istio_tcp_connections_opened_total', 'api'), 3);
  t.is(count(text, 'istio_tcp_connections_closed_total', 'web'), 1);
  t.is(count(text, 'istio_tcp_sent_bytes_total', 'web'), 7);
  // Other metric names and the label set are Istio's.
  t.regex(text, /^# TYPE istio_tcp_connections_opened_total counter$/m);
  t.regex(text, /istio_tcp_connections_opened_total\{reporter="source",source_workload="api",/);
});
