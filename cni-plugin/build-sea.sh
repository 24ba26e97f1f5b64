#!/usr/bin/env bash
# Builds the CNI plugin as a single executable (Node's single executable application support), so it runs on
# kubelet hosts that have no Node.js:
#   1. esbuild bundles cni-plugin/plugin/main.ts and everything it imports (including the lazily imported
#      @kubernetes/client-node) into one CommonJS script: dist/cni-plugin/ambit-cni.cjs
#   2. node --experimental-sea-config turns that script into a preparation blob
#   3. postject injects the blob into a copy of the Node 24 binary: dist/cni-plugin/ambit-cni
# Run with `npm run build:cni`. Uses the project's Node (node_modules/.bin/node), never the system one.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# Not $NODE: npm and npx set NODE to the Node running npm (the system Node 20 here).
NODE="${AMBIT_SEA_NODE:-$ROOT/node_modules/.bin/node}"
OUT="$ROOT/dist/cni-plugin"
SCRIPT="$OUT/ambit-cni.cjs"
BLOB="$OUT/ambit-cni.blob"
CONFIG="$OUT/sea-config.json"
EXE="$OUT/ambit-cni"
mkdir -p "$OUT"

major="$("$NODE" -p 'process.versions.node.split(".")[0]')"
if [ "$major" -lt 24 ]; then
  echo "build-sea: needs Node >= 24, $NODE is $("$NODE" --version)" >&2
  exit 1
fi

# 1. One CommonJS file, no runtime require of node_modules (the only bare requires left are optional ones that
#    ws/debug wrap in try/catch: bufferutil, utf-8-validate, supports-color).
"$ROOT/node_modules/.bin/esbuild" "$ROOT/cni-plugin/plugin/main.ts" \
  --bundle --platform=node --format=cjs --target=node24 --minify --keep-names \
  --legal-comments=none --log-level=warning --outfile="$SCRIPT"

# 2. The preparation blob. The code cache is V8-version specific, which is fine: it is injected into this very Node.
cat >"$CONFIG" <<EOF
{
  "main": "$SCRIPT",
  "output": "$BLOB",
  "disableExperimentalSEAWarning": true,
  "useCodeCache": ${SEA_CODE_CACHE:-true},
  "useSnapshot": false
}
EOF
"$NODE" --experimental-sea-config "$CONFIG"

# 3. Inject into a copy of the Node binary (Linux ELF: no code signing to remove or redo).
rm -f "$EXE"
cp "$("$NODE" -p 'process.execPath')" "$EXE"
chmod u+w "$EXE"
"$NODE" "$ROOT/node_modules/postject/dist/cli.js" "$EXE" NODE_SEA_BLOB "$BLOB" \
  --sentinel-fuse NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2
chmod 755 "$EXE"
rm -f "$BLOB"
echo "build-sea: $EXE ($(du -h "$EXE" | cut -f1))"
