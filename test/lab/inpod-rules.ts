// The in-pod rules live in the node agent now (cni-plugin/agent/inpod-rules.ts); the lab uses them from there.
export * from '../../cni-plugin/agent/inpod-rules.js';
