#!/usr/bin/python3
"""HBONE interop server: terminates HTTP/2 CONNECT tunnels and splices them to TCP.

Mutual TLS 1.3 with ALPN h2, as Istio ambient does it. Uses only the standard
library and python3-h2. One thread per connection; within a connection one
selector drives the TLS socket and every tunnel's upstream socket.
"""
import argparse
import errno
import selectors
import signal
import socket
import sys
import threading

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings

from hbone_common import CHUNK, RECV_WINDOW, add_mtls_args, host_port, mtls_context, split_host_port, tls_recv, tls_send

READ, WRITE = selectors.EVENT_READ, selectors.EVENT_WRITE


def log(message):
    print(message, file=sys.stderr, flush=True)


class Tunnel:
    """One CONNECT stream spliced to one upstream TCP connection."""

    def __init__(self, sid, sock):
        self.sid, self.sock = sid, sock
        self.connected = False
        self.to_up = bytearray()  # stream bytes not yet written upstream (and not yet acknowledged)
        self.to_h2 = bytearray()  # upstream bytes waiting for stream window
        self.h2_eof = False       # client sent END_STREAM
        self.up_eof = False       # upstream sent FIN
        self.up_shut = False      # we shut down the upstream write side
        self.h2_ended = False     # we sent END_STREAM


class Session:
    """One HBONE connection: an h2 server on a TLS socket plus its tunnels."""

    def __init__(self, tls, forward):
        self.tls, self.forward = tls, forward
        # h2 4.x insists on :scheme/:path for every request, but CONNECT must not carry them;
        # the pseudo-headers are checked in open_tunnel instead.
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(
            client_side=False, header_encoding='utf-8', validate_inbound_headers=False))
        self.sel = selectors.DefaultSelector()
        self.tunnels = {}
        self.out = bytearray()
        self.closed = False

    def run(self):
        self.conn.initiate_connection()
        self.conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: RECV_WINDOW})
        self.conn.increment_flow_control_window(RECV_WINDOW - 65535)
        self.sel.register(self.tls, READ)
        try:
            while True:
                self.pump()
                if self.closed:
                    break
                for key, mask in self.sel.select():
                    if key.data is None:
                        if mask & READ:
                            self.on_tls_readable()
                    else:
                        self.on_upstream(key.data, mask)
            self.tls.settimeout(5)
            self.tls.sendall(self.out)  # e.g. a GOAWAY after a protocol error
        except OSError:
            pass
        finally:
            for t in list(self.tunnels.values()):
                self.drop(t)
            self.sel.close()

    def on_tls_readable(self):
        try:
            data, eof = tls_recv(self.tls)
            events = self.conn.receive_data(bytes(data)) if data else []
        except (OSError, h2.exceptions.ProtocolError) as e:
            log(f'connection error: {e!r}')
            self.closed = True
            return
        for ev in events:
            t = self.tunnels.get(getattr(ev, 'stream_id', None))
            if isinstance(ev, h2.events.RequestReceived):
                self.open_tunnel(ev.stream_id, dict(ev.headers))
            elif isinstance(ev, h2.events.DataReceived):
                if t and not t.up_shut:
                    t.to_up += ev.data  # acknowledged once written upstream (back-pressure)
                    unacked = ev.flow_controlled_length - len(ev.data)  # padding
                else:
                    unacked = ev.flow_controlled_length
                if unacked:
                    self.conn.acknowledge_received_data(unacked, ev.stream_id)
            elif isinstance(ev, h2.events.StreamEnded) and t:
                t.h2_eof = True
            elif isinstance(ev, h2.events.StreamReset) and t:
                self.drop(t)
            elif isinstance(ev, h2.events.ConnectionTerminated):
                self.closed = True
        if eof:
            self.closed = True

    def reply(self, sid, status):
        self.conn.send_headers(sid, [(':status', str(status))], end_stream=True)

    def open_tunnel(self, sid, headers):
        if (headers.get(':method') != 'CONNECT' or not headers.get(':authority')
                or {':scheme', ':path', ':protocol'} & headers.keys()):
            return self.reply(sid, 400)
        target = self.forward or split_host_port(headers[':authority'])
        if target is None:
            return self.reply(sid, 400)
        try:
            family, kind, proto, _, addr = socket.getaddrinfo(*target, type=socket.SOCK_STREAM)[0]
            sock = socket.socket(family, kind, proto)
        except OSError as e:
            log(f'stream {sid}: cannot reach {target}: {e}')
            return self.reply(sid, 503)
        sock.setblocking(False)
        err = sock.connect_ex(addr)
        if err not in (0, errno.EINPROGRESS):
            log(f'stream {sid}: connect to {target} failed: {errno.errorcode.get(err, err)}')
            sock.close()
            return self.reply(sid, 503)
        self.tunnels[sid] = Tunnel(sid, sock)
        self.sel.register(sock, WRITE, self.tunnels[sid])  # writable = connect finished

    def on_upstream(self, t, mask):
        if not t.connected:
            err = t.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                log(f'stream {t.sid}: upstream connect failed: {errno.errorcode.get(err, err)}')
                self.drop(t)
                self.reply(t.sid, 503)
            else:
                t.connected = True
                self.conn.send_headers(t.sid, [(':status', '200')])
            return
        try:
            if mask & READ:
                data = t.sock.recv(CHUNK)
                t.to_h2 += data
                t.up_eof = not data
            if mask & WRITE and t.to_up:
                n = t.sock.send(t.to_up)
                del t.to_up[:n]
                self.conn.acknowledge_received_data(n, t.sid)
        except BlockingIOError:
            pass
        except OSError as e:
            log(f'stream {t.sid}: upstream error: {e}')
            self.drop(t)
            try:
                self.conn.reset_stream(t.sid, h2.errors.ErrorCodes.CONNECT_ERROR)
            except h2.exceptions.StreamClosedError:
                pass

    def pump(self):
        """Move upstream bytes into streams, propagate half-closes, update interest, flush TLS."""
        for t in list(self.tunnels.values()):
            if not t.connected:
                continue
            while t.to_h2:
                n = min(len(t.to_h2), self.conn.local_flow_control_window(t.sid),
                        self.conn.max_outbound_frame_size)
                if n <= 0:
                    break  # blocked until WINDOW_UPDATE
                self.conn.send_data(t.sid, bytes(t.to_h2[:n]))
                del t.to_h2[:n]
            if t.up_eof and not t.to_h2 and not t.h2_ended:
                self.conn.end_stream(t.sid)
                t.h2_ended = True
            if t.h2_eof and not t.to_up and not t.up_shut:
                try:
                    t.sock.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
                t.up_shut = True
            if t.h2_ended and t.up_shut:
                self.drop(t)
                continue
            self.watch(t.sock, (READ if not t.up_eof and len(t.to_h2) < CHUNK else 0)
                       | (WRITE if t.to_up else 0), t)
        self.out += self.conn.data_to_send()
        tls_send(self.tls, self.out)
        self.sel.modify(self.tls, READ | (WRITE if self.out else 0))

    def watch(self, sock, events, data=None):
        key = self.sel.get_map().get(sock)
        if not events:
            if key:
                self.sel.unregister(sock)
        elif key is None:
            self.sel.register(sock, events, data)
        elif key.events != events:
            self.sel.modify(sock, events, data)

    def drop(self, t):
        self.tunnels.pop(t.sid, None)
        self.watch(t.sock, 0)
        t.sock.close()


def serve_connection(raw, ctx, forward):
    try:
        raw.settimeout(10)
        tls = ctx.wrap_socket(raw, server_side=True)
    except OSError as e:
        log(f'handshake failed: {e}')
        raw.close()
        return
    with tls:
        if tls.selected_alpn_protocol() != 'h2':
            log(f'client negotiated ALPN {tls.selected_alpn_protocol()!r}, not h2')
            return
        sans = [v for k, v in (tls.getpeercert() or {}).get('subjectAltName', ()) if k == 'URI']
        log('peer=' + ','.join(sans))
        tls.setblocking(False)
        try:
            Session(tls, forward).run()
        except Exception as e:  # keep serving other connections
            log(f'connection failed: {e!r}')


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument('--listen', required=True, type=host_port, help='HOST:PORT to listen on')
    add_mtls_args(p, 'server', 'root(s) that client certificates must chain to (PEM)')
    p.add_argument('--forward', type=host_port,
                   help='send every tunnel to this HOST:PORT instead of its :authority')
    args = p.parse_args()

    ctx = mtls_context(args, server=True)

    family = socket.AF_INET6 if ':' in args.listen[0] else socket.AF_INET
    listener = socket.create_server(args.listen, family=family, backlog=128)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print('ready', flush=True)
    try:
        while True:
            raw, _ = listener.accept()
            threading.Thread(target=serve_connection, args=(raw, ctx, args.forward), daemon=True).start()
    except KeyboardInterrupt:
        pass
    finally:
        listener.close()


if __name__ == '__main__':
    main()
