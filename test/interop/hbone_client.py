#!/usr/bin/python3
"""HBONE interop client: carries stdin/stdout over one HTTP/2 CONNECT stream.

Mutual TLS 1.3 with ALPN h2, as Istio ambient does it. Uses only the standard
library and python3-h2. Exit codes: 0 ok, 1 transport/protocol error,
2 CONNECT answered with a status other than 200, 3 server identity mismatch.
"""
import argparse
import os
import selectors
import socket
import sys

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings

from hbone_common import CHUNK, RECV_WINDOW, add_mtls_args, host_port, mtls_context, tls_recv, tls_send


def fail(code, message):
    print(message, file=sys.stderr)
    sys.exit(code)


def parse_args():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument('--connect', required=True, type=host_port, help='HBONE server HOST:PORT')
    p.add_argument('--authority', required=True, help='tunnel target IP:PORT ([v6]:PORT)')
    add_mtls_args(p, 'client', 'trusted root(s) (PEM)')
    p.add_argument('--expect-san', help='required URI SAN of the server, e.g. spiffe://td/ns/x/sa/y')
    p.add_argument('--header', action='append', default=[], metavar='NAME:VALUE',
                   help='extra request header (baggage, forwarded, traceparent, ...)')
    return p.parse_args()


def tls_connect(args):
    ctx = mtls_context(args, server=False)
    try:
        tls = ctx.wrap_socket(socket.create_connection(args.connect, timeout=10))
    except OSError as e:
        fail(1, f'connect/handshake failed: {e}')
    if tls.selected_alpn_protocol() != 'h2':
        fail(1, f'server negotiated ALPN {tls.selected_alpn_protocol()!r}, not h2')
    sans = [v for k, v in (tls.getpeercert() or {}).get('subjectAltName', ()) if k == 'URI']
    if args.expect_san and args.expect_san not in sans:
        fail(3, f'server URI SAN {sans} does not match expected {args.expect_san}')
    return tls


def main():
    args = parse_args()
    extra = []
    for h in args.header:
        name, sep, value = h.partition(':')
        if not sep:
            fail(1, f'bad --header {h!r}, expected NAME:VALUE')
        extra.append((name.strip().lower(), value.strip()))

    tls = tls_connect(args)
    try:
        run_tunnel(tls, args.authority, extra)
    except (OSError, h2.exceptions.ProtocolError) as e:
        fail(1, f'connection error: {e}')


def run_tunnel(tls, authority, extra):
    tls.setblocking(False)
    # h2 4.x insists on :scheme/:path for every request, but CONNECT must not carry them.
    conn = h2.connection.H2Connection(h2.config.H2Configuration(
        client_side=True, header_encoding='utf-8', validate_outbound_headers=False))
    conn.initiate_connection()
    conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: RECV_WINDOW})
    conn.increment_flow_control_window(RECV_WINDOW - 65535)
    sid = conn.get_next_available_stream_id()
    conn.send_headers(sid, [(':method', 'CONNECT'), (':authority', authority)] + extra)

    stdin, stdout = sys.stdin.buffer.fileno(), sys.stdout.buffer
    out = bytearray()      # encrypted-to-be bytes for the socket
    pending = bytearray()  # stdin bytes waiting for flow-control window
    status = None
    stdin_eof = local_done = remote_done = False
    sel = selectors.PollSelector()  # poll, unlike epoll, also accepts a regular file on stdin
    sel.register(tls, selectors.EVENT_READ)
    stdin_registered = False

    while True:
        if status == 200 and not local_done:
            while pending:
                n = min(len(pending), conn.local_flow_control_window(sid), conn.max_outbound_frame_size)
                if n <= 0:
                    break  # blocked: a WINDOW_UPDATE or SETTINGS will reopen the window
                conn.send_data(sid, bytes(pending[:n]))
                del pending[:n]
            if stdin_eof and not pending:
                conn.end_stream(sid)
                local_done = True
        out += conn.data_to_send()
        tls_send(tls, out)
        stdout.flush()

        sel.modify(tls, selectors.EVENT_READ | (selectors.EVENT_WRITE if out else 0))
        want_stdin = status == 200 and not stdin_eof and not pending and len(out) < 4 * CHUNK
        if want_stdin != stdin_registered:
            if want_stdin:
                sel.register(stdin, selectors.EVENT_READ)
            else:
                sel.unregister(stdin)
            stdin_registered = want_stdin
        if local_done and remote_done:
            break

        for key, mask in sel.select():
            if key.fileobj == stdin:
                chunk = os.read(stdin, CHUNK)
                stdin_eof = not chunk
                pending += chunk
            elif mask & selectors.EVENT_READ:
                data, eof = tls_recv(tls)
                for ev in conn.receive_data(bytes(data)) if data else []:
                    if isinstance(ev, h2.events.ResponseReceived):
                        status = int(dict(ev.headers).get(':status', 0))
                        print(f'status={status}', file=sys.stderr, flush=True)
                        if status != 200:
                            sys.exit(2)
                    elif isinstance(ev, h2.events.DataReceived):
                        stdout.write(ev.data)
                        conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                    elif isinstance(ev, h2.events.StreamEnded):
                        remote_done = True
                    elif isinstance(ev, h2.events.StreamReset):
                        fail(1, f'stream reset by server (error code {ev.error_code})')
                    elif isinstance(ev, h2.events.ConnectionTerminated) and (
                            ev.error_code or ev.last_stream_id < sid):  # a graceful GOAWAY is fine
                        fail(1, f'server sent GOAWAY (error code {ev.error_code})')
                if eof and not (local_done and remote_done):
                    fail(1, 'connection closed by server before the tunnel finished')

    stdout.flush()
    conn.close_connection()
    tls.setblocking(True)
    try:
        tls.sendall(out + conn.data_to_send())  # best effort: the tunnel already finished
    except OSError:
        pass
    tls.close()


if __name__ == '__main__':
    main()
