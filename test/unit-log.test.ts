// ztunnel's loggers (telemetry/log.ts): access-log lines are held for up to HOLD_MS and written together, any other line
// at once (after the access-log lines held before it), and nothing is lost when the process ends before held lines are
// due. Each case runs in a child process whose stdout is a file, so the test sees exactly what reached
// the descriptor and when.
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { HeldLinesWriter } from '../ztunnel/telemetry/log.js';

const LOG = new URL('../ztunnel/telemetry/log.js', import.meta.url).href;
const dir = mkdtempSync(join(tmpdir(), 'ambit-log-'));
test.after.always(() => rmSync(dir, { recursive: true, force: true }));

/** Run `body` (ES module code with `log`, `accessLog` and `written()` in scope) with stdout to a file. */
function run(name: string, body: string): { status: number | null; lines: Record<string, unknown>[]; msgs: string[]; stderr: string } {
  const out = join(dir, `${name}.out`);
  const script = `
    import { readFileSync } from 'node:fs';
    import { createLoggers, HOLD_MS } from ${JSON.stringify(LOG)};
    const { log, accessLog } = createLoggers('info', { node: 'n1' });
    const written = () => readFileSync(${JSON.stringify(out)}, 'utf8').split('\\n').filter(Boolean).map((l) => JSON.parse(l).msg);
    ${body}`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', openSync(out, 'w'), 'pipe'], encoding: 'utf8', timeout: 20_000 });
  const lines = readFileSync(out, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);
  return { status: r.status, lines, msgs: lines.map((l) => String(l.msg)), stderr: r.stderr };
}

test('access-log lines are held for up to HOLD_MS, then written together in order; a later line is held afresh', (t) => {
  const r = run('hold', `
    const t0 = performance.now();
    accessLog.info('one'); accessLog.info('two');
    if (written().length !== 0) throw new Error('written at once: ' + written());
    setImmediate(() => {
      // Only a check while the hold cannot have run out (a loaded machine may be slower than that).
      if (performance.now() - t0 < HOLD_MS && written().length !== 0) throw new Error('written after one turn: ' + written());
    });
    // A timer started after the hold's, with as long a delay, runs after it.
    setTimeout(() => {
      if (written().join() !== 'one,two') throw new Error('after the hold: ' + written());
      accessLog.info('three');
      if (written().join() !== 'one,two') throw new Error('three written at once: ' + written());
      setTimeout(() => { if (written().join() !== 'one,two,three') throw new Error('after the second hold: ' + written()); }, HOLD_MS);
    }, HOLD_MS);`);
  t.is(r.status, 0, r.stderr);
  t.deepEqual(r.msgs, ['one', 'two', 'three']);
});

test('any other line is written at once, after the access-log lines held before it', (t) => {
  const r = run('order', `
    accessLog.info('held'); log.warn('now');
    if (written().join() !== 'held,now') throw new Error('at once: ' + written());
    accessLog.info('later');`);
  t.is(r.status, 0, r.stderr);
  t.deepEqual(r.msgs, ['held', 'now', 'later']);
});

test('access-log lines carry scope access; the others do not', (t) => {
  const r = run('scope', `accessLog.info('a'); log.info('b');`);
  t.is(r.status, 0, r.stderr);
  t.like(r.lines[0], { node: 'n1', scope: 'access', msg: 'a' });
  t.like(r.lines[1], { node: 'n1', msg: 'b' });
  t.false('scope' in r.lines[1]!);
});

test('process.exit() while lines are held loses nothing', (t) => {
  const r = run('exit', `accessLog.info('before'); accessLog.warn('last words'); process.exit(3);`);
  t.is(r.status, 3);
  t.deepEqual(r.msgs, ['before', 'last words']);
});

test('an uncaught error while lines are held loses nothing', (t) => {
  const r = run('crash', `accessLog.error('about to fail'); throw new Error('boom');`);
  t.is(r.status, 1);
  t.regex(r.stderr, /boom/);
  t.deepEqual(r.msgs, ['about to fail']);
});

test('more lines than the buffer holds are written as they come, and every line is kept', (t) => {
  const r = run('burst', `for (let i = 0; i < 2000; i++) accessLog.info({ pad: 'x'.repeat(100) }, 'line ' + i);
    if (written().length === 0) throw new Error('nothing written of 200 KiB of lines');`);
  t.is(r.status, 0, r.stderr);
  t.deepEqual(r.msgs, Array.from({ length: 2000 }, (_, i) => `line ${i}`));
});

test('chunks are cut at line ends and hold at most PIPE_BUF bytes, so two threads\' writes to a pipe cannot mix lines', async (t) => {
  const chunks: string[] = [];
  const w = new HeldLinesWriter((c) => chunks.push(c), 10);
  // 100 lines of 150 bytes with two-byte characters among them (bytes, not characters, are what count).
  const lines = Array.from({ length: 100 }, (_, i) => `{"i":${String(i).padStart(3, '0')},"s":"${'é'.repeat(20)}${'x'.repeat(93)}"}\n`);
  t.true(lines.every((l) => Buffer.byteLength(l) === 150));
  for (const l of lines) w.write(l);
  t.deepEqual(chunks, [], 'held');
  await new Promise((r) => setTimeout(r, 10));
  t.is(chunks.join(''), lines.join(''));
  t.true(chunks.every((c) => c.endsWith('\n') && Buffer.byteLength(c) <= 4096), chunks.map((c) => Buffer.byteLength(c)).join());
  t.is(chunks.length, Math.ceil(100 / Math.floor(4096 / 150)), 'as few writes as that allows');
});

test('a line longer than PIPE_BUF is written whole, in a chunk of its own', (t) => {
  const chunks: string[] = [];
  const w = new HeldLinesWriter((c) => chunks.push(c));
  const long = `{"pad":"${'y'.repeat(5000)}"}\n`;
  w.write('{"a":1}\n');
  w.writeNow(long);
  t.deepEqual(chunks, ['{"a":1}\n', long]);
});
