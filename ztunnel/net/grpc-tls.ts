// TLS for ztunnel's gRPC channels to the control plane (xDS and CA): the chain must lead to our root, and the server
// must carry the expected name (the host dialled, or an override such as istiod.istio-system.svc, as Istio's
// ALT_XDS_HOSTNAME / ALT_CA_HOSTNAME).
import * as grpc from '@grpc/grpc-js';
import { checkServerIdentity, type PeerCertificate } from 'node:tls';

export const hostOf = (address: string): string => address.replace(/:\d+$/, '').replace(/^\[|\]$/g, '');

export function tlsChannel(roots: string[], address: string, serverName?: string): { credentials: grpc.ChannelCredentials; options: grpc.ChannelOptions } {
  const expected = serverName || hostOf(address);
  const options: grpc.ChannelOptions = serverName ? { 'grpc.ssl_target_name_override': serverName } : {};
  const credentials = grpc.credentials.createSsl(Buffer.from(roots.join('')), null, null, {
    checkServerIdentity: (_host: string, cert: PeerCertificate) => checkServerIdentity(expected, cert),
  });
  return { credentials, options };
}
