"""What the HBONE interop client and server share: sizes, HOST:PORT parsing, the mutual TLS setup and non-blocking
TLS reads and writes."""
import argparse
import ssl

CHUNK = 64 * 1024
RECV_WINDOW = 4 * 1024 * 1024  # our receive window (stream and connection)


def split_host_port(text):
    host, _, port = text.rpartition(':')
    if not host or not port.isdigit():
        return None
    return host.strip('[]'), int(port)


def host_port(text):
    parsed = split_host_port(text)
    if parsed is None:
        raise argparse.ArgumentTypeError(f'expected HOST:PORT, got {text!r}')
    return parsed


def add_mtls_args(parser, side, roots_help):
    """--cert, --key and --ca, the files mtls_context() reads."""
    parser.add_argument('--cert', required=True, help=f'{side} certificate chain (PEM)')
    parser.add_argument('--key', required=True, help=f'{side} private key (PEM)')
    parser.add_argument('--ca', required=True, help=roots_help)


def mtls_context(args, server):
    """Mutual TLS 1.3 with ALPN h2, as Istio ambient does it: our chain from --cert/--key, the peer's must lead to --ca."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if server else ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    if server:
        ctx.verify_mode = ssl.CERT_REQUIRED
    else:
        ctx.check_hostname = False  # SPIFFE certs have an empty subject; the URI SAN is checked instead
    ctx.load_verify_locations(args.ca)
    ctx.load_cert_chain(args.cert, args.key)
    ctx.set_alpn_protocols(['h2'])
    return ctx


def tls_recv(tls):
    """Everything readable right now from a non-blocking TLS socket, and whether EOF was seen."""
    data = bytearray()
    while True:
        try:
            chunk = tls.recv(CHUNK)
        except ssl.SSLWantReadError:
            return data, False
        if not chunk:
            return data, True
        data += chunk


def tls_send(tls, out):
    """Write as much of `out` as the socket takes; a retry re-sends the same prefix as SSL requires."""
    try:
        while out:
            del out[:tls.send(out[:CHUNK])]
    except (ssl.SSLWantWriteError, ssl.SSLWantReadError):
        pass
