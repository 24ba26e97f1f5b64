"""What the HBONE interop client and server share: sizes, HOST:PORT parsing and non-blocking TLS reads and writes."""
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
