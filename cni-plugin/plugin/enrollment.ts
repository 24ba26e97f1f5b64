// Whether a pod belongs in the ambient mesh, from its labels and its namespace's (Istio's default enablement).
export const DATAPLANE_MODE_LABEL = 'istio.io/dataplane-mode';
export const SIDECAR_STATUS_ANNOTATION = 'sidecar.istio.io/status';

export interface PodFacts {
  labels?: Record<string, string> | undefined;
  annotations?: Record<string, string> | undefined;
  hostNetwork?: boolean | undefined;
}

export interface Decision {
  enroll: boolean;
  reason: string;
}

export function decideEnrollment(pod: PodFacts, namespaceLabels: Record<string, string> | undefined): Decision {
  if (pod.hostNetwork) return { enroll: false, reason: 'hostNetwork pod' };
  if (pod.annotations?.[SIDECAR_STATUS_ANNOTATION] !== undefined) return { enroll: false, reason: 'pod has a sidecar' };
  const podMode = pod.labels?.[DATAPLANE_MODE_LABEL];
  if (podMode === 'none') return { enroll: false, reason: `pod label ${DATAPLANE_MODE_LABEL}=none` };
  if (podMode === 'ambient') return { enroll: true, reason: `pod label ${DATAPLANE_MODE_LABEL}=ambient` };
  if (namespaceLabels?.[DATAPLANE_MODE_LABEL] === 'ambient') return { enroll: true, reason: `namespace label ${DATAPLANE_MODE_LABEL}=ambient` };
  return { enroll: false, reason: 'no ambient label on pod or namespace' };
}
