// Gateway and GatewayClass status as istiod reports it for waypoints (pilot/pkg/config/kube/gateway/conversion.go
// reportGatewayStatus, gatewaycommon SetProgrammedCondition): Accepted; Programmed only once the Service has a ready
// endpoint on 15008; addresses = the ClusterIP(s), then the hostname; per listener conditions, an unexpected
// listener Accepted=False/UnsupportedProtocol.
import type { V1Condition } from '@kubernetes/client-node';
import { HBONE_PORT, hasAddresses, isProgrammed, MESH_CONTROLLER, type Gateway, type Waypoint } from './gateway.js';

type Cond = Omit<V1Condition, 'lastTransitionTime'> & { lastTransitionTime?: Date | string };

export interface GatewayStatus {
  addresses: { type: 'IPAddress' | 'Hostname'; value: string }[];
  conditions: Cond[];
  listeners: {
    name: string;
    supportedKinds: { group: string; kind: string }[];
    attachedRoutes: number;
    conditions: Cond[];
  }[];
}

const UNEXPECTED_LISTENER = `Expected a single listener on port ${HBONE_PORT} with protocol "HBONE"`;

/**
 * `previous` keeps a condition's lastTransitionTime while its status is unchanged, so rewriting the same status
 * is a no-op. `now` is the time to stamp on conditions that changed.
 */
export function gatewayStatus(g: Gateway, w: Waypoint, now: string): GatewayStatus {
  const gen = g.metadata?.generation ?? 0;
  const previous = g.status?.conditions ?? [];
  const cond = (type: string, ok: boolean, reason: string, message: string, prev: readonly Cond[] = previous): Cond => {
    const status = ok ? 'True' : 'False';
    const before = prev.find((c) => c.type === type);
    const lastTransitionTime = before && before.status === status && before.lastTransitionTime ? String(before.lastTransitionTime) : now;
    return { type, status, reason, message, observedGeneration: gen, lastTransitionTime };
  };
  const programmed = isProgrammed(w);
  const listenersOk = w.unexpectedListeners.length === 0 && (g.spec?.listeners ?? []).length > 0;
  const service = `${w.hostname}:${HBONE_PORT}`;
  const programmedReason = programmed
    ? ['Programmed', `Resource programmed, assigned to service(s) ${service}`]
    : w.clusterIps.length === 0
      ? ['AddressNotAssigned', `no address assigned yet to service ${w.hostname}`]
      : ['AddressNotAssigned', `no ready instances found for ${service}`];
  const prevListeners = (g.status?.listeners ?? []) as GatewayStatus['listeners'];
  return {
    // istiod: not reported until ready, then never removed; the hostname form after the IPs.
    addresses: hasAddresses(w) ? [...w.clusterIps.map((value) => ({ type: 'IPAddress' as const, value })), { type: 'Hostname', value: w.hostname }] : [],
    conditions: [
      listenersOk
        ? cond('Accepted', true, 'Accepted', 'Resource accepted')
        : cond('Accepted', false, 'ListenersNotValid', UNEXPECTED_LISTENER),
      cond('Programmed', programmed, programmedReason[0]!, programmedReason[1]!),
      cond('ResolvedRefs', true, 'ResolvedRefs', 'Resolved all references'),
    ],
    listeners: (g.spec?.listeners ?? []).map((l) => {
      const prev = prevListeners.find((p) => p.name === l.name)?.conditions ?? [];
      const ok = !w.unexpectedListeners.includes(l.name);
      return {
        name: l.name,
        supportedKinds: [],
        attachedRoutes: 0,
        conditions: ok
          ? [
              cond('Accepted', true, 'Accepted', 'No errors found', prev),
              cond('Conflicted', false, 'NoConflicts', 'No errors found', prev),
              cond('Programmed', programmed, programmed ? 'Programmed' : 'Pending', programmed ? 'No errors found' : programmedReason[1]!, prev),
              cond('ResolvedRefs', true, 'ResolvedRefs', 'No errors found', prev),
            ]
          : [
              cond('Accepted', false, 'UnsupportedProtocol', UNEXPECTED_LISTENER, prev),
              cond('Programmed', false, 'Invalid', UNEXPECTED_LISTENER, prev),
            ],
      };
    }),
  };
}

export function gatewayClassStatus(generation: number, now: string): { conditions: Cond[] } {
  return {
    conditions: [
      { type: 'Accepted', status: 'True', reason: 'Accepted', message: `Handled by ${MESH_CONTROLLER}`, observedGeneration: generation, lastTransitionTime: now },
    ],
  };
}
