// Unit tests for the helpers that keep per-connection state small: request headers as a flat list, shared labels.
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

test('Metrics.sharedLabels: equal values give the first object seen; different values their own', (t) => {
  const m = new Metrics();
  const first = labels('api');
  t.is(m.sharedLabels(first), first);
  t.is(m.sharedLabels(labels('api')), first);
  const other = labels('web');
  t.is(m.sharedLabels(other), other);
  t.not(m.sharedLabels(labels('web')), first);
  // A value that differs in one label only, or whose text could be confused when joined, is another set.
  const tricky = { ...first, source_workload: 'api","shop' };
  t.is(m.sharedLabels(tricky), tricky);
  t.deepEqual(Object.keys(m.sharedLabels(labels('api'))), [...LABELS]);
});

test('Metrics: counters are the same with shared labels', async (t) => {
  const m = new Metrics();
  for (let i = 0; i < 3; i++) {
    const l = m.sharedLabels(labels('api'));
    m.connectionOpened(l);
    m.connectionClosed(l, 10, 20);
  }
  const text = await m.registry.metrics();
  t.regex(text, /istio_tcp_connections_opened_total\{[^}]*source_workload="api"[^}]*\} 3/);
  t.regex(text, /istio_tcp_received_bytes_total\{[^}]*source_workload="api"[^}]*\} 30/);
  t.regex(text, /istio_tcp_sent_bytes_total\{[^}]*source_workload="api"[^}]*\} 60/);
});
