// Names of the waypoint's Envoy resources (Istio's where Istio has one, so istioctl-minded readers find them).
import type { PortProtocol, Principal } from '../model.js';

export const CONNECT_TERMINATE = 'connect_terminate';
export const MAIN_INTERNAL = 'main_internal';
/** SDS names Istio uses: the workload certificate and the mesh root. */
export const SECRET_DEFAULT = 'default';
export const SECRET_ROOTCA = 'ROOTCA';
export const HBONE_PORT = 15008;

/** Filter-state keys. The first two are the original_dst listener filter's well-known keys. */
export const FS_LOCAL_IP = 'envoy.filters.listener.original_dst.local_ip';
export const FS_REMOTE_IP = 'envoy.filters.listener.original_dst.remote_ip';
/** The HBONE client's SPIFFE id (`spiffe://td/ns/x/sa/y`), for RBAC in main_internal, which has no TLS. */
export const FS_PEER_PRINCIPAL = 'io.ambit.peer_principal';
/** The CONNECT :authority, hashed into the upstream pool key so multiplexed requests never share a connection. */
export const FS_CONNECT_AUTHORITY = 'io.ambit.connect_authority';
/** Envoy 1.40's string factory whose objects are hashed into the connection pool key (envoy#43208). */
export const HASHABLE_STRING = 'envoy.hashable_string';
/** Dynamic metadata namespace the original_dst listener filter reads (`local`) on an internal listener. */
export const ORIGINAL_DST_METADATA = 'envoy.filters.listener.original_dst';

/** What a filter chain (and its cluster) speaks. */
export type ChainProtocol = 'http' | 'tcp';

/** The chains (and clusters) of a port: an unknown protocol gets both, sniffing picks one (Istio's order). */
export const chainProtocols = (p: PortProtocol): ChainProtocol[] => (p === 'unknown' ? ['tcp', 'http'] : [p]);

/** `inbound-vip|<port>|<http|tcp>|<hostname>`: the filter chain, its route config and its cluster. */
export const vipName = (port: number, protocol: ChainProtocol, hostname: string): string => `inbound-vip|${port}|${protocol}|${hostname}`;

/**
 * One connect_originate listener and cluster per destination identity: the cluster's TLS context checks that exact
 * SPIFFE id (Istio's single connect_originate only checks the trust domain). An endpoint names the listener of its
 * identity, so the check follows the endpoint.
 */
export const connectOriginateName = (identity: Principal): string => `connect_originate|${identity}`;

/** `ip:port`, `[v6]:port`. */
export const hostPort = (ip: string, port: number): string => (ip.includes(':') ? `[${ip}]:${port}` : `${ip}:${port}`);

export const spiffe = (p: Principal): string => `spiffe://${p}`;
