"""MicroPython's socket, as umqtt.simple uses it, over a CPython socket.

The differences that matter: `write(buf, n)` writes the first n bytes (and
takes str as well as bytes),
`read(n)` on a blocking socket returns n bytes unless the peer closed, and on
a non-blocking one returns None when nothing is there.
"""

import socket as _socket
import ssl as _ssl

AF_INET = _socket.AF_INET
SOCK_STREAM = _socket.SOCK_STREAM


def getaddrinfo(host, port, af=0, type=0, proto=0, flags=0):
    # usocket.socket() is IPv4 TCP, so only offer IPv4 TCP addresses.
    return _socket.getaddrinfo(host, port, _socket.AF_INET, _socket.SOCK_STREAM)


class socket:
    def __init__(self, af=AF_INET, type=SOCK_STREAM, proto=0):
        self._sock = _socket.socket(af, type, proto)
        self._sock.setsockopt(_socket.IPPROTO_TCP, _socket.TCP_NODELAY, 1)

    def connect(self, addr):
        self._sock.connect(addr)

    def settimeout(self, seconds):
        self._sock.settimeout(seconds)

    def setblocking(self, flag):
        self._sock.setblocking(flag)

    def fileno(self):
        return self._sock.fileno()

    def write(self, buf, n=None):
        if isinstance(buf, str):  # MicroPython streams take text as UTF-8
            buf = buf.encode()
        data = memoryview(buf)[: len(buf) if n is None else n]
        self._sock.sendall(data)
        return len(data)

    def read(self, n):
        if self._sock.gettimeout() == 0.0:
            try:
                return self._sock.recv(n)
            except (BlockingIOError, _ssl.SSLWantReadError):  # (after tls.py wrapped it)
                return None
        chunks = []
        remaining = n
        while remaining:
            chunk = self._sock.recv(remaining)
            if not chunk:
                break
            chunks.append(chunk)
            remaining -= len(chunk)
        return b"".join(chunks)

    def close(self):
        self._sock.close()
