// The Node.js flags ztunnel runs with: `node --max-semi-space-size=1 --initial-old-space-size=64 dist/ztunnel/main.js`.
//
// Every chunk a proxy reads (from an app's socket, or a DATA frame out of TLS) is a new ArrayBuffer outside the JS
// heap. Dead ones are freed only by a GC, and V8 starts a full mark-compact whenever about 64 MiB of them have piled
// up. With V8's default young generation (semi-spaces growing to 32 MiB here) a bulk transfer allocates too little JS
// to scavenge often, so a tunnel at 1.6 Gbit/s ran 3-4 full GCs a second, ~15% of the proxy's CPU. With 1 MiB
// semi-spaces the scavenges come often enough to free the buffers first (bench/README.md, "Young generation").
// That held only for a transfer started soon after ztunnel did. One started after some seconds without traffic got
// an incremental mark-compact every ~100 ms (65 in 8 s; 1.0-1.3 Gbit/s instead of 1.6-1.9): V8 started marking at its
// "allocation limit" with 9 MiB of the old generation still free, a heuristic it applies only to a heap whose size was
// not configured. With a configured initial old space of 64 MiB the same run had none (bench/README.md, "Old
// generation after idle").
// The flags are process-wide, so proxy threads get them too; they must be given at launch, as V8 sizes the main
// thread's heap before any of our code runs.
export const ZTUNNEL_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=1', '--initial-old-space-size=64'];

/** Which of ZTUNNEL_NODE_FLAGS the process was not started with (on its command line or in NODE_OPTIONS). */
export function missingNodeFlags(execArgv: readonly string[], nodeOptions = ''): string[] {
  const given = [...execArgv, ...nodeOptions.split(/\s+/)];
  const name = (flag: string) => flag.split('=')[0]!;
  return ZTUNNEL_NODE_FLAGS.filter((f) => !given.some((g) => name(g) === name(f)));
}
