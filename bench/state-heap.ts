// ztunnel's retained heap per known workload: a fresh process hands N synthetic workloads (and their services) to an
// XdsClient as delta xDS responses, through the path a response from istiod takes (wire bytes -> the gRPC stream's
// deserializer -> the client's handling: decode, convert, its own per-resource bookkeeping, the state), and reports how
// much the heap grew, measured after full GCs. The client is never started: no connection, its ACKs go nowhere.
//   node --expose-gc dist/bench/state-heap.js --workloads 20000 [--json]
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { ADDRESS_TYPE_URL, AddressCodec, type MessageInit } from '../protos/index.js';
import type * as pb from '../protos/index.js';
import { AggregatedDiscoveryServiceDefinition, DeltaDiscoveryResponseCodec, type DeltaDiscoveryResponse, type XdsResource } from '../protos/xds.js';
import { ipToBytes } from '../ztunnel/net/ip.js';
import { ProxyState } from '../ztunnel/state/index.js';
import { XdsClient } from '../ztunnel/xds/client.js';
import type { ConvertDefaults } from '../ztunnel/xds/convert.js';
import type { StateHeapResult } from './results.js';

export const DEFAULTS: ConvertDefaults = { trustDomain: 'cluster.local', clusterId: 'Kubernetes' };
const NODES = 100;
const PODS_PER_SERVICE = 10;
const SERVICES_PER_NAMESPACE = 2;

/** The shape of a synthetic cluster: one deployment per service, ~10 pods each, two services per namespace. */
export interface ClusterShape {
  /** Prefix of every name, so two clusters (e.g. a warm-up one) share no strings. */
  prefix: string;
  workloads: number;
  services: number;
  namespaces: number;
}

export function clusterShape(workloads: number, prefix = 'app'): ClusterShape {
  if (!Number.isInteger(workloads) || workloads < 1) throw new RangeError(`workloads must be a positive integer, got ${workloads}`);
  const services = Math.ceil(workloads / PODS_PER_SERVICE);
  return { prefix, workloads, services, namespaces: Math.ceil(services / SERVICES_PER_NAMESPACE) };
}

const hex = (n: number, width: number) => (n >>> 0).toString(16).padStart(width, '0').slice(-width);
// Pod IPs count up from 10.0.0.1, service VIPs from 10.96.0.0: unique and disjoint up to a million pods.
const podIp = (i: number) => `10.${(i + 1) >> 16}.${((i + 1) >> 8) & 0xff}.${(i + 1) & 0xff}`;
const vip = (s: number) => `10.${96 + ((s >> 16) & 0x0f)}.${(s >> 8) & 0xff}.${s & 0xff}`;

function serviceOf(c: ClusterShape, s: number) {
  const namespace = `${c.prefix}-ns-${Math.floor(s / SERVICES_PER_NAMESPACE)}`;
  const name = `${c.prefix}-svc-${s}`;
  const hostname = `${name}.${namespace}.svc.cluster.local`;
  // Every third service also exposes gRPC.
  const ports = s % 3 === 0 ? [{ servicePort: 80, targetPort: 8080 }, { servicePort: 9090, targetPort: 9090 }] : [{ servicePort: 80, targetPort: 8080 }];
  return { namespace, name, hostname, key: `${namespace}/${hostname}`, ports };
}

/** What a few lookups must find for pod `i`. */
export function expectedWorkload(c: ClusterShape, i: number) {
  const s = Math.floor(i / PODS_PER_SERVICE);
  const svc = serviceOf(c, s);
  const name = `${svc.name}-${hex(s * 2654435761, 10)}-${hex(i * 40503 + 7, 5)}`;
  return { uid: `${DEFAULTS.clusterId}//v1/Pod/${svc.namespace}/${name}`, name, ip: podIp(i), service: svc, serviceIndex: s };
}

export function expectedService(c: ClusterShape, s: number) {
  return { ...serviceOf(c, s), vip: vip(s) };
}

export function syntheticWorkload(c: ClusterShape, i: number): MessageInit<pb.Address> {
  const { uid, name, ip, service: svc, serviceIndex: s } = expectedWorkload(c, i);
  return {
    workload: {
      uid, name, namespace: svc.namespace, addresses: [ipToBytes(ip)], network: '', tunnelProtocol: 'HBONE',
      trustDomain: DEFAULTS.trustDomain, serviceAccount: `${svc.name}-sa`, node: `node-${i % NODES}`,
      canonicalName: svc.name, canonicalRevision: s % 4 === 0 ? 'v2' : 'v1', workloadType: 'DEPLOYMENT', workloadName: svc.name,
      status: 'HEALTHY', clusterId: DEFAULTS.clusterId,
      services: { [svc.key]: { ports: svc.ports.map((p) => ({ ...p, appProtocol: 'HTTP11' as const })) } },
      // One deployment in five is selected by a workload-selector policy.
      authorizationPolicies: s % 5 === 0 ? [`${svc.namespace}/allow-${svc.name}`] : [],
    },
  };
}

export function syntheticService(c: ClusterShape, s: number): MessageInit<pb.Address> {
  const svc = expectedService(c, s);
  return {
    service: {
      name: svc.name, namespace: svc.namespace, hostname: svc.hostname, addresses: [{ network: '', address: ipToBytes(svc.vip) }],
      ports: svc.ports, subjectAltNames: [],
    },
  };
}

/** One Address resource as the controller sends it: named by the workload's uid or the service's `ns/hostname`,
 *  versioned by a hash of its content, with the `<network>/<ip>` aliases on-demand clients look it up by. */
function resource(name: string, body: Uint8Array, aliases: string[]): XdsResource {
  const version = createHash('sha256').update(body).update(aliases.join('\0')).digest('base64url').slice(0, 16);
  return { name, version, aliases, resource: { type_url: ADDRESS_TYPE_URL, value: body } };
}

/** The cluster as xDS would deliver it: delta responses (wire bytes) of `batchSize` resources, each service then its pods. */
export function* encodedResponses(c: ClusterShape, batchSize = 1000): Generator<Uint8Array> {
  let resources: XdsResource[] = [];
  let nonce = 0;
  const flush = () => {
    const bytes = DeltaDiscoveryResponseCodec.encode({ typeUrl: ADDRESS_TYPE_URL, resources, removedResources: [], nonce: `n${++nonce}`, systemVersionInfo: '' });
    resources = [];
    return bytes;
  };
  for (let s = 0; s < c.services; s++) {
    const svc = expectedService(c, s);
    resources.push(resource(svc.key, AddressCodec.encode(syntheticService(c, s)), [`/${svc.vip}`]));
    const end = Math.min(c.workloads, (s + 1) * PODS_PER_SERVICE);
    for (let i = s * PODS_PER_SERVICE; i < end; i++) {
      const w = expectedWorkload(c, i);
      resources.push(resource(w.uid, AddressCodec.encode(syntheticWorkload(c, i)), [`/${w.ip}`]));
    }
    if (resources.length >= batchSize) yield flush();
  }
  if (resources.length) yield flush();
}

const silent = pino({ level: 'silent' });

/** An XdsClient (wildcard, as ztunnel runs by default) over `state`, never started: `fill` hands it its responses. */
export function benchClient(state: ProxyState): XdsClient {
  return new XdsClient(
    { address: '127.0.0.1:1', node: { ip: '10.0.0.100', podName: 'ztunnel-bench', podNamespace: 'istio-system', nodeName: 'node-0', clusterId: DEFAULTS.clusterId }, onDemand: false, defaults: DEFAULTS },
    state,
    silent,
  );
}

// What the gRPC stream hands the client for each message it receives.
const deserialize = AggregatedDiscoveryServiceDefinition.deltaAggregatedResources.responseDeserialize as (b: Buffer) => DeltaDiscoveryResponse;

/** Hands the client each response as its stream would; throws if it NACKed any. Nothing of the input is kept. */
export function fill(client: XdsClient, c: ClusterShape): void {
  const nacks = client.stats.nacks;
  for (const bytes of encodedResponses(c)) client.handle(deserialize(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)));
  if (client.stats.nacks !== nacks) throw new Error(`the client rejected ${client.stats.nacks - nacks} response(s)`);
}

async function settledHeapUsed(): Promise<number> {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) throw new Error('run node with --expose-gc');
  for (let i = 0; i < 4; i++) {
    gc();
    await new Promise((r) => setImmediate(r));
  }
  return process.memoryUsage().heapUsed;
}

/** In this process (which must have --expose-gc and nothing else on its heap worth speaking of). */
export async function runStateHeap(workloads: number): Promise<StateHeapResult> {
  const shape = clusterShape(workloads);
  // Warm up with a cluster that shares no names, so compiled code and lazily built codecs land in the baseline.
  let warm: XdsClient | undefined = benchClient(new ProxyState());
  fill(warm, clusterShape(2000, 'warm'));
  warm.close();
  warm = undefined;
  // The client's fixed cost (its gRPC channel, not connected) is in the baseline too.
  const state = new ProxyState();
  const client = benchClient(state);
  const before = await settledHeapUsed();
  fill(client, shape);
  const after = await settledHeapUsed();
  client.close();
  if (state.workloads.size !== shape.workloads || state.services.size !== shape.services) {
    throw new Error(`state holds ${state.workloads.size} workloads and ${state.services.size} services, expected ${shape.workloads} and ${shape.services}`);
  }
  const heapBytes = after - before;
  return { workloads, services: shape.services, heapBytes, bytesPerWorkload: heapBytes / workloads };
}

/** Runs the benchmark in a fresh process (a clean heap) and returns its result. */
export function measureStateHeap(workloads: number, opts: { timeoutMs?: number } = {}): Promise<StateHeapResult> {
  const timeoutMs = opts.timeoutMs ?? 300_000;
  const args = ['--expose-gc', fileURLToPath(import.meta.url), '--workloads', String(workloads), '--json'];
  return new Promise((resolvePromise, reject) => {
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`state-heap (${workloads} workloads) did not finish within ${timeoutMs} ms; stderr: ${stderr.trim() || '(empty)'}`));
    }, timeoutMs);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (code !== 0) return reject(new Error(`state-heap (${workloads} workloads) failed (${signal ?? `exit ${code}`}); stderr: ${stderr.trim() || '(empty)'}`));
      try {
        const r = JSON.parse(stdout.trim().split('\n').at(-1)!) as StateHeapResult;
        if (r.workloads !== workloads || !(r.heapBytes > 0)) throw new Error('unexpected values');
        resolvePromise(r);
      } catch (e) {
        reject(new Error(`state-heap (${workloads} workloads) printed no usable result (${(e as Error).message}): ${stdout.trim()}; stderr: ${stderr.trim()}`));
      }
    });
  });
}

async function main(argv: string[]): Promise<void> {
  const i = argv.indexOf('--workloads');
  const workloads = Number(i >= 0 ? argv[i + 1] : NaN);
  if (!Number.isInteger(workloads) || workloads < 1) throw new Error('usage: node --expose-gc state-heap.js --workloads N [--json]');
  const r = await runStateHeap(workloads);
  if (argv.includes('--json')) console.log(JSON.stringify(r));
  else console.log(`${r.workloads} workloads, ${r.services} services: ${(r.heapBytes / 1e6).toFixed(2)} MB of heap, ${Math.round(r.bytesPerWorkload)} bytes per workload`);
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main(process.argv.slice(2)).catch((e: Error) => {
    console.error(e.message);
    process.exit(1);
  });
}
