// Finding the network namespace of a pod that is already running (the agent started after it, or the pod's
// namespace got the label later): scan /proc/<pid>/ns/net, one process per distinct namespace, and pick the one
// that holds one of the pod's IPs (Istio's podnetns/net.go did this by IP; newer Istio matches cgroups).
import { readdirSync, readlinkSync } from 'node:fs';
import { run } from './netns.js';

/** How the agent finds a running pod's netns: a path the agent can open, or undefined when not found. */
export type NetnsLookup = (pod: { name: string; namespace: string; uid: string; ips: string[] }) => Promise<string | undefined> | string | undefined;

/** Addresses configured inside a netns (via `ip -o addr` in it). */
function addressesIn(path: string): string[] {
  const out = run('nsenter', [`--net=${path}`, '--', 'ip', '-o', 'addr', 'show']);
  return out
    .split('\n')
    .map((l) => /\binet6? ([0-9a-fA-F.:]+)\//.exec(l)?.[1])
    .filter((a): a is string => !!a);
}

/** One /proc/<pid>/ns/net path per distinct network namespace other than our own. */
export function distinctNetns(proc = '/proc'): string[] {
  let own: string | undefined;
  try {
    own = readlinkSync(`${proc}/self/ns/net`);
  } catch {}
  const seen = new Set<string>();
  const paths: string[] = [];
  for (const entry of readdirSync(proc)) {
    if (!/^\d+$/.test(entry)) continue;
    const path = `${proc}/${entry}/ns/net`;
    let id: string;
    try {
      id = readlinkSync(path);
    } catch {
      continue; // gone, or a kernel thread
    }
    if (id === own || seen.has(id)) continue;
    seen.add(id);
    paths.push(path);
  }
  return paths;
}

/** The default lookup: scan procfs for a netns holding one of the pod's IPs. */
export const procfsLookup: NetnsLookup = ({ ips }) => {
  if (!ips.length) return undefined;
  const want = new Set(ips);
  for (const path of distinctNetns()) {
    try {
      if (addressesIn(path).some((a) => want.has(a))) return path;
    } catch {
      // the process exited meanwhile
    }
  }
  return undefined;
};
