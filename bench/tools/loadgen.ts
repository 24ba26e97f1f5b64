// The benchmarks' client app, run inside a pod netns (ip netns exec). Prints one JSON line of results.
//
//   loadgen.js latency  HOST PORT --rate R --seconds S [--connections C] [--size B] [--warmup W]
//   loadgen.js connrate HOST PORT --concurrency C --seconds S [--size B]
//   loadgen.js hold     HOST PORT --count N [--parallel P]    (prints a line once all are open; holds until stdin ends)
//
// latency is open loop: request i is due at start + i/R whatever happened before, requests go round-robin to C
// persistent connections (one outstanding per connection, the rest queue), and latency runs from the due time to
// the end of the echoed response. A stalled connection therefore charges its delay to every request queued behind
// it, which is the correction for coordinated omission. What is taken out is this generator's own lateness: its
// timers tick in whole milliseconds, so a request may go out after the moment it could have (the later of its due
// time and its connection becoming free); that lag is measured per request, subtracted, and reported on its own.
import net from 'node:net';
import { summarize } from '../stats.js';

interface Args {
  cmd: string;
  host: string;
  port: number;
  flags: Map<string, number>;
}

function parseArgs(argv: string[]): Args {
  const [cmd, host, port, ...rest] = argv;
  if (!cmd || !host || !port || !/^\d+$/.test(port)) throw new Error('usage: loadgen.js latency|connrate|hold HOST PORT [--flag N ...]');
  const flags = new Map<string, number>();
  for (let i = 0; i < rest.length; i += 2) {
    const v = Number(rest[i + 1]);
    if (!rest[i]!.startsWith('--') || !Number.isFinite(v)) throw new Error(`bad flag ${rest[i]} ${rest[i + 1]}`);
    flags.set(rest[i]!.slice(2), v);
  }
  return { cmd, host, port: Number(port), flags };
}

const nowNs = () => Number(process.hrtime.bigint());

function connect(host: string, port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host, port, noDelay: true }, () => {
      s.off('error', reject);
      resolve(s);
    });
    s.once('error', reject);
  });
}

async function latency(host: string, port: number, f: Map<string, number>) {
  const rate = f.get('rate') ?? 1000;
  const seconds = f.get('seconds') ?? 5;
  const warmup = f.get('warmup') ?? Math.min(1, seconds / 5);
  const size = f.get('size') ?? 64;
  const nconn = f.get('connections') ?? 8;
  const payload = Buffer.alloc(size, 0x61);
  const intervalNs = 1e9 / rate;
  const total = Math.floor((warmup + seconds) * rate);
  const skip = Math.floor(warmup * rate);
  const samples = new Float64Array(total - skip);
  const lags = new Float64Array(total - skip);
  let recorded = 0;
  let lagged = 0;
  let completed = 0;
  let errors = 0;

  interface Conn {
    sock: net.Socket;
    queue: number[]; // due times (ns) of requests waiting for this connection
    inflightDue: number; // due time of the request on the wire, -1 when idle
    inflightLag: number; // how much later than it could have this generator sent it (ns)
    freeSince: number; // when the connection last became free (ns)
    inflightIndex: number;
    pending: number[]; // request indexes matching queue
    got: number;
  }
  const conns: Conn[] = [];
  for (let i = 0; i < nconn; i++) conns.push({ sock: await connect(host, port), queue: [], pending: [], inflightDue: -1, inflightLag: 0, inflightIndex: -1, freeSince: 0, got: 0 });

  const sendNext = (c: Conn) => {
    if (c.inflightDue >= 0 || c.queue.length === 0) return;
    c.inflightDue = c.queue.shift()!;
    c.inflightIndex = c.pending.shift()!;
    c.inflightLag = nowNs() - Math.max(c.inflightDue, c.freeSince);
    if (c.inflightIndex >= skip) lags[lagged++] = c.inflightLag / 1e6;
    c.sock.write(payload);
  };
  let done!: () => void;
  const finished = new Promise<void>((r) => (done = r));
  for (const c of conns) {
    c.sock.on('data', (chunk: Buffer) => {
      c.got += chunk.length;
      while (c.got >= size && c.inflightDue >= 0) {
        c.got -= size;
        c.freeSince = nowNs();
        if (c.inflightIndex >= skip) samples[recorded++] = (c.freeSince - c.inflightDue - c.inflightLag) / 1e6;
        c.inflightDue = -1;
        if (++completed + errors === total) done();
        sendNext(c);
      }
    });
    c.sock.on('error', () => {});
    c.sock.on('close', () => {
      // Everything this connection still owed is lost.
      const lost = c.queue.length + (c.inflightDue >= 0 ? 1 : 0);
      c.queue.length = 0;
      c.pending.length = 0;
      c.inflightDue = -1;
      errors += lost;
      if (lost && completed + errors === total) done();
    });
  }

  const start = nowNs();
  let issued = 0;
  const tick = () => {
    const due = Math.min(total, Math.floor((nowNs() - start) / intervalNs) + 1);
    for (; issued < due; issued++) {
      const c = conns[issued % nconn]!;
      if (c.sock.destroyed) {
        errors++;
        continue;
      }
      c.queue.push(start + issued * intervalNs);
      c.pending.push(issued);
      sendNext(c);
    }
    if (issued < total) setTimeout(tick, Math.max(0, (start + issued * intervalNs - nowNs()) / 1e6 - 0.5));
    else if (completed + errors === total) done();
  };
  tick();
  const timeout = setTimeout(done, (warmup + seconds + 10) * 1000);
  await finished;
  clearTimeout(timeout);
  errors = total - completed;
  for (const c of conns) c.sock.destroy();
  const s = summarize(samples.subarray(0, recorded));
  const lag = summarize(lags.subarray(0, lagged));
  return {
    rate, connections: nconn, payloadBytes: size, seconds, completed: recorded, errors, achievedRate: recorded / seconds,
    p50: s.p50, p90: s.p90, p99: s.p99, p999: s.p999, max: s.max, sendLagP50: lag.p50, sendLagP99: lag.p99,
  };
}

/** One connection: connect, send `payload`, wait for the echo, close. */
function oneShot(host: string, port: number, payload: Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    let got = 0;
    const s = net.connect({ host, port, noDelay: true }, () => s.write(payload));
    const timer = setTimeout(() => s.destroy(new Error('timeout')), 10_000);
    s.on('data', (c: Buffer) => {
      got += c.length;
      if (got >= payload.length) s.end();
    });
    s.on('error', reject);
    s.on('close', () => {
      clearTimeout(timer);
      if (got >= payload.length) resolve();
      else reject(new Error('closed early'));
    });
  });
}

async function connrate(host: string, port: number, f: Map<string, number>) {
  const concurrency = f.get('concurrency') ?? 1;
  const seconds = f.get('seconds') ?? 5;
  const payload = Buffer.alloc(f.get('size') ?? 64, 0x62);
  const start = nowNs();
  const end = start + seconds * 1e9;
  let completed = 0;
  let errors = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (nowNs() < end) {
        try {
          await oneShot(host, port, payload);
          completed++;
        } catch {
          errors++;
          await new Promise((r) => setTimeout(r, 10));
        }
      }
    }),
  );
  const elapsed = (nowNs() - start) / 1e9;
  return { concurrency, seconds: elapsed, completed, errors, connectionsPerSecond: completed / elapsed };
}

/** Open `count` connections, each proven end to end by one echoed byte, then hold them until stdin ends. */
async function hold(host: string, port: number, f: Map<string, number>) {
  const count = f.get('count') ?? 1000;
  const parallel = f.get('parallel') ?? 100;
  const socks: net.Socket[] = [];
  let errors = 0;
  let next = 0;
  await Promise.all(
    Array.from({ length: parallel }, async () => {
      while (next < count) {
        next++;
        try {
          const s = await connect(host, port);
          s.on('error', () => {});
          await new Promise<void>((resolve, reject) => {
            const timer = setTimeout(() => reject(new Error('no echo')), 10_000);
            s.once('data', () => {
              clearTimeout(timer);
              resolve();
            });
            s.write('x');
          });
          socks.push(s);
        } catch {
          errors++;
        }
      }
    }),
  );
  console.log(JSON.stringify({ held: socks.length, errors }));
  await new Promise((r) => {
    process.stdin.on('end', r).on('close', r).resume();
  });
  for (const s of socks) s.destroy();
  return undefined;
}

try {
  const a = parseArgs(process.argv.slice(2));
  const run = { latency, connrate, hold }[a.cmd];
  if (!run) throw new Error(`unknown command ${a.cmd}`);
  const r = await run(a.host, a.port, a.flags);
  if (r) console.log(JSON.stringify(r));
  process.exit(0);
} catch (e) {
  console.error(`loadgen: ${(e as Error).message}`);
  process.exit(1);
}
