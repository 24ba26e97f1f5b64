// ZDS packet validation: what ztunnel accepts from the node agent and what it NACKs.
import test from 'ava';
import { WorkloadRequestCodec, WorkloadResponseCodec, ZdsHelloCodec } from '../protos/index.js';
import { encodeAck, encodeHello, parseZdsPacket } from '../ztunnel/inpod/zds-protocol.js';

const info = { name: 'web-1', namespace: 'shop', serviceAccount: 'web' };
const add = WorkloadRequestCodec.encode({ add: { uid: 'pod-uid-1', workloadInfo: info } });

test('an Add with its netns fd becomes an add message', (t) => {
  t.deepEqual(parseZdsPacket(add, 42), { kind: 'add', uid: 'pod-uid-1', info, netnsFd: 42 });
});

test('an Add without an fd, or without workload info, is refused', (t) => {
  t.throws(() => parseZdsPacket(add, undefined), { message: /without the pod's network namespace fd/ });
  const noInfo = WorkloadRequestCodec.encode({ add: { uid: 'u' } });
  t.throws(() => parseZdsPacket(noInfo, 3), { message: /workload_info/ });
  t.throws(() => parseZdsPacket(WorkloadRequestCodec.encode({ add: { workloadInfo: info } }), 3), { message: /uid/ });
});

test('Keep, Del and SnapshotSent parse; with an fd attached they are refused', (t) => {
  const keep = WorkloadRequestCodec.encode({ keep: { uid: 'k' } });
  const del = WorkloadRequestCodec.encode({ del: { uid: 'd' } });
  const snap = WorkloadRequestCodec.encode({ snapshotSent: {} });
  t.deepEqual(parseZdsPacket(keep, undefined), { kind: 'keep', uid: 'k' });
  t.deepEqual(parseZdsPacket(del, undefined), { kind: 'del', uid: 'd' });
  t.deepEqual(parseZdsPacket(snap, undefined), { kind: 'snapshot' });
  for (const p of [keep, del, snap]) t.throws(() => parseZdsPacket(p, 7), { message: /non-Add/ });
});

test('malformed and empty packets are refused with a clear error', (t) => {
  t.throws(() => parseZdsPacket(Uint8Array.from([0x0a, 0xff, 0x01]), undefined), { message: /malformed ZDS request/ });
  t.throws(() => parseZdsPacket(new Uint8Array(0), undefined), { message: /without a payload/ });
});

test('hello and acks encode as Istio expects', (t) => {
  t.is(ZdsHelloCodec.decode(encodeHello()).version, 'V1');
  t.is(WorkloadResponseCodec.decode(encodeAck()).ack?.error, '');
  t.is(WorkloadResponseCodec.decode(encodeAck('boom')).ack?.error, 'boom');
});
