// The CNI plugin -> node agent event, as Istio's istio-cni sends it: HTTP POST /cmdadd on a unix socket, with a JSON body
// shaped like Go's encoding of its CNIPluginAddEvent (field names as is; net.IPNet as {IP: text, Mask: base64 bytes}),
// so that our plugin works with Istio's node agent and Istio's plugin with ours.

export const CNI_ADD_EVENT_PATH = '/cmdadd';
/** Default socket of the node agent's plugin event server. */
export const CNI_EVENT_SOCKET = '/var/run/istio-cni/pluginevent.sock';

export interface IpNet {
  IP: string;
  /** Base64 of the mask bytes (4 or 16). */
  Mask: string;
}

export interface IpConfig {
  Interface?: number | null;
  Address: IpNet;
  Gateway?: string | null;
}

export interface CniPluginAddEvent {
  Netns: string;
  PodName: string;
  PodNamespace: string;
  IPs: IpConfig[];
}

/** `10.244.1.5/24` -> {IP, Mask} as Go encodes net.IPNet. */
export function ipNet(cidr: string): IpNet {
  const [ip, len] = cidr.split('/') as [string, string | undefined];
  const v6 = ip.includes(':');
  const bits = len === undefined ? (v6 ? 128 : 32) : Number(len);
  const mask = Buffer.alloc(v6 ? 16 : 4);
  for (let i = 0; i < bits; i++) mask[i >> 3]! |= 0x80 >> (i & 7);
  return { IP: ip, Mask: mask.toString('base64') };
}
