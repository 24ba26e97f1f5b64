// In-pod redirection as Istio's node agent (istio-cni) installs it inside an ambient pod's network namespace,
// and the host-side SNAT that lets "kubelet" probes from the node bypass ztunnel.
//
// Behaviour follows istio/istio cni/pkg/iptables/iptables.go (AppendInpodRules, REDIRECT mode) and its golden
// file cni/pkg/iptables/testdata/default.golden; the policy route follows cni/pkg/iptables/iptables_linux.go;
// the probe SNAT follows testdata/hostprobe.golden. Our chains are called AMBIT_* instead of ISTIO_*.
import type { NetnsExec } from './netns.js';

/** Any namespace the rules can be applied in (the lab's Netns, PathNetns, HostNetns). */
type Netns = NetnsExec;

/** ztunnel marks every socket it opens in a pod with this (Istio: InpodMark = 1337). */
export const INPOD_MARK = '0x539/0xfff';
/** Connmark for connections ztunnel opened towards the app with a spoofed source (Istio: InpodTProxyMark). */
export const INPOD_CONNMARK = '0x111/0xfff';
/** Policy routing table that sends marked replies back to ztunnel over lo (Istio: RouteTableInbound). */
export const INPOD_ROUTE_TABLE = '100';
/** Source address the node gives its own probes to pods (Istio: HostProbeSNATAddress). */
export const PROBE_SNAT_IP = '169.254.7.127';
/** Priority of the fwmark rule (Istio uses 32764). */
const RULE_PREF = '32764';

export const PORTS = { outbound: 15001, inboundPlaintext: 15006, hbone: 15008, dns: 15053 } as const;

const CHAIN_PRE = 'AMBIT_PRERT';
const CHAIN_OUT = 'AMBIT_OUTPUT';
const CHAIN_POST = 'AMBIT_POSTRT';

export interface InpodOptions {
  /** Also capture DNS (UDP and TCP port 53) to ztunnel's DNS proxy on 15053 (Istio's redirectDNS). Default false. */
  dns?: boolean;
}

type Table = 'mangle' | 'nat' | 'raw';
/** One table's part of the rule set: the jumps from built-in chains into ours, and our chains' rules. */
interface TableRules {
  jumps: [builtin: string, chain: string][];
  rules: string[];
}

/** The in-pod rule set, table by table (iptables-restore syntax without the table headers). */
export function inpodRuleSet(o: InpodOptions = {}): Record<Table, TableRules> {
  const { outbound, inboundPlaintext, hbone, dns } = PORTS;
  const set: Record<Table, TableRules> = {
    mangle: {
      jumps: [['PREROUTING', CHAIN_PRE], ['OUTPUT', CHAIN_OUT]],
      rules: [
        // A packet ztunnel sent (mark 0x539) entering the stack, i.e. ztunnel -> app over lo with a spoofed
        // source: remember the connection, so the app's replies can be steered back to ztunnel.
        `-A ${CHAIN_PRE} -m mark --mark ${INPOD_MARK} -j CONNMARK --set-xmark ${INPOD_CONNMARK}`,
        // The app's packets on such a connection get the mark back; `ip rule fwmark 0x111` then routes them to lo.
        `-A ${CHAIN_OUT} -m connmark --mark ${INPOD_CONNMARK} -j CONNMARK --restore-mark --nfmask 0xffffffff --ctmask 0xffffffff`,
      ],
    },
    nat: {
      jumps: [['OUTPUT', CHAIN_OUT], ['PREROUTING', CHAIN_PRE]],
      rules: [
        // Node probes (SNATed to 169.254.7.127 on the node) go straight to the app, and so do the app's answers.
        `-A ${CHAIN_PRE} -s ${PROBE_SNAT_IP}/32 -p tcp -m tcp -j ACCEPT`,
        `-A ${CHAIN_OUT} -d ${PROBE_SNAT_IP}/32 -p tcp -m tcp -j ACCEPT`,
        // Inbound TCP that is neither HBONE (15008, ztunnel listens there itself) nor sent by ztunnel: plaintext inbound.
        `-A ${CHAIN_PRE} ! -d 127.0.0.1/32 -p tcp -m tcp ! --dport ${hbone} -m mark ! --mark ${INPOD_MARK} -j REDIRECT --to-ports ${inboundPlaintext}`,
        ...(o.dns
          ? [
              `-A ${CHAIN_OUT} ! -o lo -p udp -m mark ! --mark ${INPOD_MARK} -m udp --dport 53 -j REDIRECT --to-ports ${dns}`,
              `-A ${CHAIN_OUT} ! -d 127.0.0.1/32 -p tcp -m tcp --dport 53 -m mark ! --mark ${INPOD_MARK} -j REDIRECT --to-ports ${dns}`,
            ]
          : []),
        // Connections steered back to ztunnel are never captured again.
        `-A ${CHAIN_OUT} -p tcp -m mark --mark ${INPOD_CONNMARK} -j ACCEPT`,
        // The app calling itself by its pod IP (leaves through lo): not captured.
        `-A ${CHAIN_OUT} ! -d 127.0.0.1/32 -o lo -j ACCEPT`,
        // Every other outbound TCP connection not opened by ztunnel: to ztunnel's outbound listener.
        `-A ${CHAIN_OUT} ! -d 127.0.0.1/32 -p tcp -m mark ! --mark ${INPOD_MARK} -j REDIRECT --to-ports ${outbound}`,
      ],
    },
    raw: { jumps: [], rules: [] },
  };
  if (o.dns) {
    // ztunnel's upstream DNS queries and their answers in their own conntrack zone (istio/istio#33469).
    set.raw = {
      jumps: [['PREROUTING', CHAIN_PRE], ['OUTPUT', CHAIN_OUT]],
      rules: [
        `-A ${CHAIN_OUT} -p udp -m mark --mark ${INPOD_MARK} -m udp --dport 53 -j CT --zone 1`,
        `-A ${CHAIN_PRE} -p udp -m mark ! --mark ${INPOD_MARK} -m udp --sport 53 -j CT --zone 1`,
      ],
    };
  }
  return set;
}

/** Tables of `iptables-save` output: table -> its lines (chain declarations and -A rules). */
function saved(ns: Netns): Map<string, string[]> {
  const tables = new Map<string, string[]>();
  let cur: string[] | undefined;
  for (const line of (ns.iptablesSave ? ns.iptablesSave() : ns.exec('iptables-save')).split('\n')) {
    if (line.startsWith('*')) tables.set(line.slice(1).trim(), (cur = []));
    else if (cur && (line.startsWith(':') || line.startsWith('-A '))) cur.push(line);
  }
  return tables;
}

/**
 * iptables-restore input (for `--noflush`) that (re)creates our chains with exactly `set`'s rules: declaring a
 * user chain flushes it, and a jump from a built-in chain is only appended when it is not there yet.
 */
function restoreInput(set: Partial<Record<Table, TableRules>>, current: Map<string, string[]>): string {
  let out = '';
  for (const [table, { jumps, rules }] of Object.entries(set) as [Table, TableRules][]) {
    if (jumps.length === 0 && rules.length === 0) continue;
    const have = current.get(table) ?? [];
    const chains = [...new Set(jumps.map(([, c]) => c))];
    out += `*${table}\n`;
    for (const c of chains) out += `:${c} - [0:0]\n`;
    for (const [builtin, chain] of jumps) if (!have.includes(`-A ${builtin} -j ${chain}`)) out += `-A ${builtin} -j ${chain}\n`;
    for (const r of rules) out += `${r}\n`;
    out += 'COMMIT\n';
  }
  return out;
}

/** Restore input that removes our chains (and the jumps into them) from every table that has any. */
function removalInput(current: Map<string, string[]>, ours: readonly string[]): string {
  let out = '';
  for (const [table, lines] of current) {
    const chains = ours.filter((c) => lines.includes(`:${c} - [0:0]`));
    const jumps = lines.filter((l) => ours.some((c) => new RegExp(`^-A [A-Z]+ -j ${c}$`).test(l)));
    if (chains.length === 0 && jumps.length === 0) continue;
    out += `*${table}\n`;
    for (const j of jumps) out += `${j.replace(/^-A /, '-D ')}\n`;
    for (const c of chains) out += `-F ${c}\n`;
    for (const c of chains) out += `-X ${c}\n`;
    out += 'COMMIT\n';
  }
  return out;
}

const ipRuleArgs = ['fwmark', INPOD_CONNMARK, 'pref', RULE_PREF, 'lookup', INPOD_ROUTE_TABLE];
const loRouteArgs = ['local', '0.0.0.0/0', 'dev', 'lo', 'table', INPOD_ROUTE_TABLE];
const hasIpRule = (ns: Netns) =>
  ns.exec('ip', '-4', 'rule', 'show').split('\n').some((l) => l.startsWith(`${RULE_PREF}:`) && l.includes(`fwmark ${INPOD_CONNMARK} lookup ${INPOD_ROUTE_TABLE}`));

/** Install (or re-install: idempotent) the in-pod redirection in `ns`, as the node agent does before the ZDS Add. */
export function installInpodRules(ns: Netns, o: InpodOptions = {}): void {
  const current = saved(ns);
  // A previous install with DNS capture left raw-table chains; start from nothing there.
  if (!o.dns && current.get('raw')?.some((l) => l.startsWith(`:${CHAIN_PRE} `) || l.startsWith(`:${CHAIN_OUT} `))) {
    const raw = new Map([['raw', current.get('raw')!]]);
    ns.iptables(removalInput(raw, [CHAIN_PRE, CHAIN_OUT]));
  }
  ns.iptables(restoreInput(inpodRuleSet(o), current));
  // ip route replace local 0.0.0.0/0 dev lo table 100; ip rule add fwmark 0x111/0xfff pref 32764 lookup 100
  ns.exec('ip', 'route', 'replace', ...loRouteArgs);
  if (!hasIpRule(ns)) ns.exec('ip', 'rule', 'add', ...ipRuleArgs);
}

/** Remove everything installInpodRules added (idempotent), as the node agent does when a pod leaves the mesh. */
export function removeInpodRules(ns: Netns): void {
  const input = removalInput(saved(ns), [CHAIN_PRE, CHAIN_OUT]);
  if (input) ns.iptables(input);
  while (hasIpRule(ns)) ns.exec('ip', 'rule', 'del', ...ipRuleArgs);
  try {
    ns.exec('ip', 'route', 'del', ...loRouteArgs);
  } catch {
    // not there
  }
}

/**
 * Node side (Istio: hostprobe.golden): TCP from a local socket of the node to one of `podIps` (the enrolled pods,
 * Istio keeps them in an ipset) leaves with source 169.254.7.127, which the in-pod rules let through uncaptured.
 * Replaces the whole set each call; an empty list leaves the (empty) chain in place.
 */
export function setHostProbeSnat(node: Netns, podIps: readonly string[]): void {
  const current = saved(node);
  const rules = podIps.map((ip) => `-A ${CHAIN_POST} -d ${ip}/32 -p tcp -m owner --socket-exists -j SNAT --to-source ${PROBE_SNAT_IP}`);
  node.iptables(restoreInput({ nat: { jumps: [['POSTROUTING', CHAIN_POST]], rules } }, current));
}

/** The same in `ip`-command form, for documentation and debugging output. */
export function inpodRoutingCommands(): string[] {
  return [`ip route replace ${loRouteArgs.join(' ')}`, `ip rule add ${ipRuleArgs.join(' ')}`];
}

/** iptables-save of a namespace (all tables), for assertions and debugging. */
export function iptablesSave(ns: Netns): string {
  return ns.iptablesSave ? ns.iptablesSave() : ns.exec('iptables-save');
}
