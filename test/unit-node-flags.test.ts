// The Node.js flags ztunnel is tuned for (ztunnel/node-flags.ts): how a missing one is detected, and that every way
// of launching ztunnel that we ship passes them.
import test from 'ava';
import { readFileSync } from 'node:fs';
import { missingNodeFlags, ZTUNNEL_NODE_FLAGS } from '../ztunnel/node-flags.js';

const FLAG = '--max-semi-space-size=1';

test('a flag counts as given on the command line or in NODE_OPTIONS, with any value', (t) => {
  t.deepEqual(missingNodeFlags([]), [FLAG]);
  t.deepEqual(missingNodeFlags(['--enable-source-maps'], '--cpu-prof'), [FLAG]);
  t.deepEqual(missingNodeFlags([FLAG]), []);
  t.deepEqual(missingNodeFlags([], ` --cpu-prof  ${FLAG} `), []);
  // Someone who chose another size on purpose is not told off.
  t.deepEqual(missingNodeFlags(['--max-semi-space-size=4']), []);
  t.deepEqual(missingNodeFlags(['--max-semi-space-size-x=1']), [FLAG]);
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
