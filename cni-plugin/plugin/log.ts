// A tiny JSON-lines logger for the plugin: never stdout (stdout is the CNI result channel).
export type Level = 'debug' | 'info' | 'warn' | 'error';
const ORDER: Record<Level, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export interface Logger {
  log(level: Level, msg: string, fields?: Record<string, unknown>): void;
  setLevel(level: string): void;
}

export function jsonLogger(write: (line: string) => void, level: string = 'info'): Logger {
  let min = ORDER[level as Level] ?? ORDER.info;
  return {
    setLevel(l) { min = ORDER[l as Level] ?? min; },
    log(l, msg, fields) {
      if (ORDER[l] < min) return;
      try {
        write(JSON.stringify({ time: new Date().toISOString(), level: l, plugin: 'ambit-cni', msg, ...fields }) + '\n');
      } catch { /* logging must never fail the plugin */ }
    },
  };
}

export const silentLogger: Logger = { log() {}, setLevel() {} };
