// ZDS packets from the node agent, validated into the messages the pod manager acts on. Pure: no sockets.
import { WorkloadRequestCodec, WorkloadResponseCodec, ZdsHelloCodec } from '../../protos/index.js';
import type { WorkloadInfo } from '../config/env.js';

export type ZdsMessage =
  | { kind: 'add'; uid: string; info: WorkloadInfo; netnsFd: number }
  | { kind: 'keep'; uid: string }
  | { kind: 'del'; uid: string }
  | { kind: 'snapshot' };

export class ZdsProtocolError extends Error {}

/**
 * Decode one packet. `fd` is the descriptor that came with it, if any: only an Add may carry one and an Add must.
 * On error the caller still owns (and must close) the fd.
 */
export function parseZdsPacket(data: Uint8Array, fd: number | undefined): ZdsMessage {
  let req;
  try {
    req = WorkloadRequestCodec.decode(data);
  } catch (e) {
    throw new ZdsProtocolError(`malformed ZDS request: ${(e as Error).message}`);
  }
  if (req.payload !== 'add' && fd !== undefined) throw new ZdsProtocolError(`a file descriptor came with a non-Add message (${req.payload ?? 'empty'})`);
  switch (req.payload) {
    case 'add': {
      const add = req.add!;
      if (!add.uid) throw new ZdsProtocolError('Add without a uid');
      const wi = add.workloadInfo;
      if (!wi || !wi.name || !wi.namespace) throw new ZdsProtocolError(`Add ${add.uid}: workload_info with name and namespace is required`);
      if (fd === undefined) throw new ZdsProtocolError(`Add ${add.uid} came without the pod's network namespace fd`);
      return { kind: 'add', uid: add.uid, info: { name: wi.name, namespace: wi.namespace, serviceAccount: wi.serviceAccount || 'default' }, netnsFd: fd };
    }
    case 'keep':
      if (!req.keep!.uid) throw new ZdsProtocolError('Keep without a uid');
      return { kind: 'keep', uid: req.keep!.uid };
    case 'del':
      if (!req.del!.uid) throw new ZdsProtocolError('Del without a uid');
      return { kind: 'del', uid: req.del!.uid };
    case 'snapshotSent':
      return { kind: 'snapshot' };
    default:
      throw new ZdsProtocolError('ZDS request without a payload');
  }
}

export const encodeHello = (): Uint8Array => ZdsHelloCodec.encode({ version: 'V1' });
export const encodeAck = (error = ''): Uint8Array => WorkloadResponseCodec.encode({ ack: { error } });
