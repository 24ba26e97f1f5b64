// The ZDS server lives in the node agent now (cni-plugin/agent/zds-server.ts); the lab uses it from there.
export * from '../../cni-plugin/agent/zds-server.js';
