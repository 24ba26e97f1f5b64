// The Node.js flags ztunnel is tuned for (ztunnel/node-flags.ts): how a missing one is detected, that ztunnel warns
// about it at start, and that every way of launching ztunnel that we ship passes them.
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { missingNodeFlags, ZTUNNEL_NODE_FLAGS } from '../ztunnel/node-flags.js';

const FLAG = '--max-semi-space-size=1';
const OLD = '--initial-old-space-size=64';
type LogLine = { msg: string; missing?: string[] };

test('a flag counts as given on the command line or in NODE_OPTIONS, with any value', (t) => {
  t.deepEqual(missingNodeFlags([]), [FLAG, OLD]);
  t.deepEqual(missingNodeFlags(['--enable-source-maps'], '--cpu-prof'), [FLAG, OLD]);
  t.deepEqual(missingNodeFlags([FLAG]), [OLD]);
  t.deepEqual(missingNodeFlags([OLD], ` --cpu-prof  ${FLAG} `), []);
  // Someone who chose another size on purpose is not told off.
  t.deepEqual(missingNodeFlags(['--max-semi-space-size=4', '--initial-old-space-size=128']), []);
  t.deepEqual(missingNodeFlags(['--max-semi-space-size-x=1', OLD]), [FLAG]);
});

test('the shebang of ztunnel/main.js and `npm start` pass the flags', (t) => {
  const shebang = readFileSync(new URL('../ztunnel/main.js', import.meta.url), 'utf8').split('\n')[0]!;
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { scripts: Record<string, string> };
  for (const f of ZTUNNEL_NODE_FLAGS) {
    t.true(shebang.split(' ').includes(f), shebang);
    t.true(pkg.scripts.start!.split(' ').includes(f), pkg.scripts.start);
  }
  t.true(shebang.startsWith('#!/usr/bin/env -S node '), 'env needs -S to pass node more than one word');
});

test('ztunnel warns at start when node lacks the flags, and not when it has them', (t) => {
  // Without a CA configured, ztunnel stops right after the check: before it opens any socket.
  const dir = mkdtempSync(join(tmpdir(), 'ambit-flags-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const config = join(dir, 'state.yaml');
  writeFileSync(config, 'workloads: []\nservices: []\npolicies: []\n');
  const main = fileURLToPath(new URL('../ztunnel/main.js', import.meta.url));
  const env = { PATH: process.env.PATH ?? '', PROXY_MODE: 'dedicated', PROXY_WORKLOAD_INFO: 'default/x/sa', LOCAL_XDS_PATH: config };
  const run = (flags: readonly string[]) => {
    const r = spawnSync(process.execPath, [...flags, main], { env, encoding: 'utf8', timeout: 20_000 });
    t.is(r.status, 1, r.stderr);
    t.regex(r.stderr, /no certificate authority/);
    return r.stdout.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as LogLine);
  };
  const warning = (lines: LogLine[]) => lines.find((l) => l.msg.startsWith('node was started without the flags'));
  t.deepEqual(warning(run([]))?.missing, [FLAG, OLD]);
  t.is(warning(run(ZTUNNEL_NODE_FLAGS)), undefined);
});
