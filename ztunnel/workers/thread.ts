// A proxy thread (ZTUNNEL_WORKER_THREADS > 1): serves every pod with listeners of its own, next to the main thread's,
// from a replica of the main thread's state. See protocol.ts for what it is asked and what it asks.
import { parentPort, workerData } from 'node:worker_threads';
import type { WorkloadCertificate } from '../identity/manager.js';
import { closeFdQuietly } from '../native/index.js';
import { NetnsSocketFactory } from '../net/sockets.js';
import { WorkloadProxies, type Shared } from '../proxy/workload-proxies.js';
import { ProxyState } from '../state/index.js';
import { applyOp } from '../state/replica.js';
import { createLoggers } from '../telemetry/log.js';
import { Metrics } from '../telemetry/metrics.js';
import type { HostApi, PodSpec, ThreadApi, ThreadData } from './protocol.js';
import { RemoteCertificates } from './remote-certificates.js';
import { Rpc } from './rpc.js';

interface Pod {
  spec: PodSpec;
  proxies: WorkloadProxies;
  started: boolean;
  released?: boolean;
}

const { cfg, index, logLevel } = workerData as ThreadData;
const { log, accessLog } = createLoggers(logLevel, { node: cfg.nodeName || undefined, thread: index });
const state = new ProxyState();
const pods = new Map<string, Pod>();

/** Close a pod's proxies and its netns fd, once (a drain may overtake a start). */
function release(pod: Pod): void {
  if (pod.released) return;
  pod.released = true;
  pod.proxies.close();
  if (pod.spec.netnsFd !== undefined) closeFdQuietly(pod.spec.netnsFd);
}

const api: ThreadApi = {
  hello: () => index,
  ops: (ops) => {
    for (const op of ops) applyOp(state, op);
  },
  issued: (cert: WorkloadCertificate) => certs.issued(cert),
  forgotten: (identity) => certs.forgotten(identity),
  logLevel: (level) => {
    log.level = level;
    accessLog.level = level;
  },
  addPod: async (spec) => {
    api.removePod(spec.key); // the main thread removes a pod before adding it again; never leak listeners or an fd
    const sockets = new NetnsSocketFactory(spec.netnsFd, true);
    const pod: Pod = { spec, proxies: new WorkloadProxies(shared, spec.info, sockets, spec.spoofSource), started: false };
    pods.set(spec.key, pod);
    try {
      await pod.proxies.start();
    } catch (err) {
      if (pods.get(spec.key) === pod) pods.delete(spec.key);
      release(pod);
      throw err;
    }
    pod.started = true;
    if (pods.get(spec.key) !== pod) release(pod); // removed while starting
  },
  removePod: (key) => {
    const pod = pods.get(key);
    if (!pod) return;
    pods.delete(key);
    if (pod.started) release(pod); // else addPod releases it once its start is over
  },
  drain: async (deadlineMs) => {
    const all = [...pods.values()];
    pods.clear();
    const results = await Promise.all(all.map((p) => p.proxies.drain(deadlineMs)));
    for (const p of all) release(p);
    log.flush(); // the host terminates the thread once this answer arrives
    return results.every(Boolean);
  },
  metrics: () => shared.metrics.registry.getMetricsAsJSON(),
  openConnections: () => {
    let n = 0;
    for (const p of pods.values()) n += p.proxies.tracker.size;
    return n;
  },
};

const host = new Rpc<ThreadApi, HostApi>(parentPort!, api, {
  // e.g. a state change that could not be applied: the replica may now differ from the main thread's state
  onNotifyError: (method, err) => log.error({ method, err: err.message }, 'request from the main thread failed'),
});
const certs = new RemoteCertificates((id) => host.call('certificate', id));
if (cfg.xdsOnDemand) {
  state.resolver = {
    fetch: (network, ip) => host.call('resolve', { network, ip }),
    touch: (network, ip) => host.notify('touch', { network, ip }),
    fetchService: (namespace, hostname) => host.call('resolveService', { namespace, hostname }),
    touchService: (namespace, hostname) => host.notify('touchService', { namespace, hostname }),
  };
}
const shared: Shared = { cfg, state, certs, metrics: new Metrics(), log, accessLog };
