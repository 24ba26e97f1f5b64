// HTTP/2 tuning for tunnels. Node's defaults (64 KiB windows) cap a tunnel far below link speed.
import type { ClientSessionOptions, ServerSessionOptions } from 'node:http2';

export const STREAM_WINDOW = 4 * 1024 * 1024;
export const CONNECTION_WINDOW = 16 * 1024 * 1024;
export const MAX_STREAMS_PER_CONNECTION = 100;

const settings = { initialWindowSize: STREAM_WINDOW, maxFrameSize: 1024 * 1024 - 1, enablePush: false };

export const clientSessionOptions: ClientSessionOptions = { settings, maxSessionMemory: 256 };
export const serverSessionOptions: ServerSessionOptions = {
  settings: { ...settings, maxConcurrentStreams: 1000 },
  maxSessionMemory: 256,
};
