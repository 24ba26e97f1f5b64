#!/usr/bin/python3
"""Independent delta ADS client (envoy.service.discovery.v3) for interop tests.

Uses only Debian's python3-grpcio and python3-protobuf, and message classes that
`protoc --python_out` generated from the project's protos (workload.proto,
authorization.proto) and Envoy's (envoy/service/discovery/v3/ads.proto with its
imports) into --out-dir. The bidi method is called generically
(channel.stream_stream) with the generated classes' serializers, so no grpc
service stubs (grpc_tools) are needed.

Modes (one stream each, on one channel, run in this order):
  --wildcard           subscribe to Address and Authorization by wildcard (first
                       request of each type with no names, as ztunnel does),
                       wait for the first response of each and ACK it.
  --on-demand KEY      Istio's on-demand way: subscribe ["*"] + unsubscribe ["*"]
                       to Address (= subscribed to nothing), ACK the answer, then
                       subscribe to KEY (`<network>/<ip>` or a resource name) and
                       wait for the response naming it (as a resource, one of its
                       aliases, or a removal), and ACK it.

Output (stdout), one JSON object per line:
  for every response received:
    {"stream", "type_url", "nonce", "system_version_info",
     "resources": [{"name", "version", "aliases", "summary"}], "removed"}
    (every response is ACKed with its nonce; a response that cannot be decoded
    is NACKed and reported as an error)
  once every mode's steps are done: {"event": "done", "acked": {stream: [nonces]}}
With --hold SECONDS > 0 the streams then stay open (later pushes are printed and
ACKed) until stdin reaches EOF or SECONDS pass, so a test can inspect the server
while we are still connected.

Exit codes: 0 ok, 1 RPC/protocol/decoding error, 2 timeout, 3 usage error.
"""
import argparse
import ipaddress
import json
import queue
import sys
import threading
import time

ADS_METHOD = '/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources'
ADDRESS_TYPE_URL = 'type.googleapis.com/istio.workload.Address'
AUTHORIZATION_TYPE_URL = 'type.googleapis.com/istio.security.Authorization'


class Timeout(Exception):
    pass


class ProtocolError(Exception):
    pass


def fail(code, message):
    print(f'ads_client: {message}', file=sys.stderr, flush=True)
    sys.exit(code)


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--address', required=True, help='xDS server HOST:PORT (plaintext)')
    p.add_argument('--out-dir', required=True, help='directory holding the protoc-generated *_pb2 modules')
    p.add_argument('--node-id', required=True, help='node.id sent in the first request of each type')
    p.add_argument('--node-meta', action='append', default=[], metavar='KEY=VALUE',
                   help='node.metadata string entry (repeatable)')
    p.add_argument('--cluster-id', default='Kubernetes', help='value of the "clusterid" request header')
    p.add_argument('--wildcard', action='store_true', help='wildcard Address + Authorization')
    p.add_argument('--on-demand', metavar='KEY', help='on-demand Address subscription to KEY (<network>/<ip>)')
    p.add_argument('--timeout', type=float, default=10.0, help='seconds to wait for each expected response')
    p.add_argument('--connect-timeout', type=float, default=10.0, help='seconds to wait for the channel')
    p.add_argument('--hold', type=float, default=0.0,
                   help='after finishing, keep streams open until stdin EOF or this many seconds')
    a = p.parse_args()
    if not a.wildcard and not a.on_demand:
        p.print_usage(sys.stderr)
        fail(3, 'give --wildcard and/or --on-demand KEY')
    for kv in a.node_meta:
        if '=' not in kv:
            fail(3, f'--node-meta expects KEY=VALUE, got {kv!r}')
    return a


def emit(obj):
    sys.stdout.write(json.dumps(obj, sort_keys=True) + '\n')
    sys.stdout.flush()


def ip_text(raw):
    try:
        return str(ipaddress.ip_address(bytes(raw)))
    except ValueError:
        return bytes(raw).hex()


class Protos:
    """The generated modules, imported from --out-dir."""

    def __init__(self, out_dir):
        sys.path.insert(0, out_dir)
        try:
            from envoy.service.discovery.v3 import discovery_pb2
            from envoy.config.core.v3 import base_pb2
            import workload_pb2
            import authorization_pb2
        except ImportError as e:
            fail(3, f'cannot import generated modules from {out_dir}: {e}')
        self.discovery = discovery_pb2
        self.base = base_pb2
        self.workload = workload_pb2
        self.authorization = authorization_pb2

    def summary(self, type_url, any_msg):
        if any_msg.type_url != type_url:
            raise ProtocolError(f'resource of type {any_msg.type_url!r} in a {type_url} response')
        if type_url == ADDRESS_TYPE_URL:
            a = self.workload.Address.FromString(any_msg.value)
            kind = a.WhichOneof('type')
            if kind == 'workload':
                w = a.workload
                return {
                    'kind': 'workload', 'uid': w.uid, 'name': w.name, 'namespace': w.namespace,
                    'network': w.network, 'addresses': [ip_text(x) for x in w.addresses],
                    'service_account': w.service_account,
                    'status': self.workload.WorkloadStatus.Name(w.status),
                    'services': sorted(w.services.keys()),
                    'authorization_policies': list(w.authorization_policies),
                }
            if kind == 'service':
                s = a.service
                return {
                    'kind': 'service', 'name': s.name, 'namespace': s.namespace, 'hostname': s.hostname,
                    'addresses': [f'{x.network}/{ip_text(x.address)}' for x in s.addresses],
                    'ports': [[p.service_port, p.target_port] for p in s.ports],
                }
            raise ProtocolError('Address with neither workload nor service')
        if type_url == AUTHORIZATION_TYPE_URL:
            z = self.authorization.Authorization.FromString(any_msg.value)
            return {
                'kind': 'authorization', 'name': z.name, 'namespace': z.namespace,
                'action': self.authorization.Action.Name(z.action),
                'scope': self.authorization.Scope.Name(z.scope), 'rules': len(z.rules),
            }
        raise ProtocolError(f'unexpected type {type_url!r}')


class AdsStream:
    """One DeltaAggregatedResources call: a request queue feeding the call, a reader thread draining it."""

    def __init__(self, label, channel, pb, args):
        self.label = label
        self.pb = pb
        self.args = args
        self.requests = queue.Queue()
        self.responses = queue.Queue()
        self.acked = []
        self.closing = False
        method = channel.stream_stream(
            ADS_METHOD,
            request_serializer=pb.discovery.DeltaDiscoveryRequest.SerializeToString,
            response_deserializer=pb.discovery.DeltaDiscoveryResponse.FromString,
        )
        self.call = method(iter(self.requests.get, None), metadata=(('clusterid', args.cluster_id),))
        self.reader = threading.Thread(target=self._read, name=f'ads-{label}', daemon=True)
        self.reader.start()
        self.node_sent = set()

    def _read(self):
        try:
            for resp in self.call:
                self.responses.put(resp)
            self.responses.put(ProtocolError('server ended the stream'))
        except Exception as e:  # grpc.RpcError and friends
            if not self.closing:
                self.responses.put(e)

    def node(self):
        n = self.pb.base.Node(id=self.args.node_id)
        for kv in self.args.node_meta:
            k, _, v = kv.partition('=')
            n.metadata.fields[k].string_value = v
        return n

    def send(self, type_url, subscribe=(), unsubscribe=(), nonce='', error=None):
        req = self.pb.discovery.DeltaDiscoveryRequest(
            type_url=type_url,
            resource_names_subscribe=list(subscribe),
            resource_names_unsubscribe=list(unsubscribe),
            response_nonce=nonce,
        )
        if type_url not in self.node_sent:  # node on the first request of each type, as ztunnel
            req.node.CopyFrom(self.node())
            self.node_sent.add(type_url)
        if error is not None:
            req.error_detail.code = 3  # INVALID_ARGUMENT
            req.error_detail.message = error
        self.requests.put(req)

    def next(self, timeout, what):
        try:
            item = self.responses.get(timeout=timeout)
        except queue.Empty:
            raise Timeout(f'[{self.label}] no response within {timeout:g}s while waiting for {what}') from None
        if isinstance(item, Exception):
            raise ProtocolError(f'[{self.label}] stream failed while waiting for {what}: {describe(item)}')
        return item

    def handle(self, resp):
        """Prints a response and ACKs it (NACK + error if it cannot be decoded)."""
        try:
            resources = [{
                'name': r.name, 'version': r.version, 'aliases': list(r.aliases),
                'summary': self.pb.summary(resp.type_url, r.resource),
            } for r in resp.resources]
        except Exception as e:
            self.send(resp.type_url, nonce=resp.nonce, error=str(e))
            raise ProtocolError(f'[{self.label}] undecodable {resp.type_url} response {resp.nonce}: {e}') from e
        emit({
            'stream': self.label, 'type_url': resp.type_url, 'nonce': resp.nonce,
            'system_version_info': resp.system_version_info,
            'resources': resources, 'removed': list(resp.removed_resources),
        })
        self.send(resp.type_url, nonce=resp.nonce)
        self.acked.append(resp.nonce)
        return resp

    def wait_for(self, deadline, what, pred):
        """Handles responses until one satisfies pred; returns it."""
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise Timeout(f'[{self.label}] timed out waiting for {what}')
            resp = self.handle(self.next(left, what))
            if pred(resp):
                return resp

    def pump(self, seconds):
        """Handles whatever arrives within `seconds` (no response is fine)."""
        end = time.monotonic() + seconds
        while True:
            left = end - time.monotonic()
            if left <= 0:
                return
            try:
                item = self.responses.get(timeout=min(left, 0.05))
            except queue.Empty:
                continue
            if isinstance(item, Exception):
                raise ProtocolError(f'[{self.label}] stream failed: {describe(item)}')
            self.handle(item)

    def close(self):
        self.closing = True
        self.requests.put(None)
        self.call.cancel()


def describe(e):
    code = getattr(e, 'code', None)
    details = getattr(e, 'details', None)
    if callable(code) and callable(details):
        return f'{code()} {details()}'
    return str(e)


def run_wildcard(stream, timeout):
    stream.send(ADDRESS_TYPE_URL)
    stream.send(AUTHORIZATION_TYPE_URL)
    pending = {ADDRESS_TYPE_URL, AUTHORIZATION_TYPE_URL}
    deadline = time.monotonic() + timeout
    while pending:
        resp = stream.wait_for(deadline, 'the first response of ' + ', '.join(sorted(pending)),
                               lambda r: r.type_url in pending)
        pending.discard(resp.type_url)


def run_on_demand(stream, key, timeout):
    stream.send(ADDRESS_TYPE_URL, subscribe=['*'], unsubscribe=['*'])
    first = stream.wait_for(time.monotonic() + timeout, 'the answer to the empty subscription',
                            lambda r: r.type_url == ADDRESS_TYPE_URL)
    if len(first.resources) or len(first.removed_resources):
        raise ProtocolError(f'[{stream.label}] subscribed to nothing but got {len(first.resources)} resources '
                            f'and {len(first.removed_resources)} removals')
    stream.send(ADDRESS_TYPE_URL, subscribe=[key])

    def names_key(r):
        if r.type_url != ADDRESS_TYPE_URL:
            return False
        return key in r.removed_resources or any(x.name == key or key in x.aliases for x in r.resources)

    stream.wait_for(time.monotonic() + timeout, f'the answer for {key}', names_key)


def stdin_eof():
    """An Event set once stdin reaches EOF (or cannot be read)."""
    done = threading.Event()

    def reader():
        try:
            while sys.stdin.buffer.read(4096):
                pass
        except (OSError, ValueError):
            pass
        done.set()

    threading.Thread(target=reader, name='stdin', daemon=True).start()
    return done


def main():
    args = parse_args()
    pb = Protos(args.out_dir)
    import grpc  # after argument checks, so usage errors do not need grpc

    channel = grpc.insecure_channel(args.address)
    streams = []
    try:
        try:
            grpc.channel_ready_future(channel).result(timeout=args.connect_timeout)
        except grpc.FutureTimeoutError:
            raise Timeout(f'could not connect to {args.address} within {args.connect_timeout:g}s') from None
        if args.wildcard:
            s = AdsStream('wildcard', channel, pb, args)
            streams.append(s)
            run_wildcard(s, args.timeout)
        if args.on_demand:
            s = AdsStream('on-demand', channel, pb, args)
            streams.append(s)
            run_on_demand(s, args.on_demand, args.timeout)
        emit({'event': 'done', 'acked': {s.label: s.acked for s in streams}})
        if args.hold > 0:
            eof = stdin_eof()
            end = time.monotonic() + args.hold
            while not eof.is_set() and time.monotonic() < end:
                for s in streams:
                    s.pump(0.05)
    except Timeout as e:
        fail(2, str(e))
    except ProtocolError as e:
        fail(1, str(e))
    except grpc.RpcError as e:
        fail(1, f'RPC failed: {describe(e)}')
    finally:
        for s in streams:
            s.close()
        channel.close()


if __name__ == '__main__':
    main()
