"""MicroPython's `tls` (the module under its `ssl`), as device/ew_tls.py uses
it, over CPython's ssl: a client context that checks the server's
certificate against a CA given as `cadata` and, with CERT_REQUIRED, for the
host name given as `server_hostname`. On a simulated MCU the certificate's
dates are checked against the board's own clock too, as MicroPython's mbedTLS
does (an unset clock counts from 2000: every certificate is in its future);
a simulated ESP8266 has axTLS's module, which cannot check certificates at
all: no CERT_REQUIRED.

wrap_socket wraps the usocket stand-in's own socket in place and returns the
same object: the board sets its timeouts on the socket TLS runs over (as it
must on MicroPython, whose TLS socket has no settimeout), and here that is
the TLS socket itself. Like MicroPython's, it reads a TLS record at a time,
so a poll on the socket may miss bytes already decrypted; umqtt reads each
packet whole, and Mosquitto sends each packet in a record of its own.
"""

import ssl as _ssl

from edgewire.sim import hardware as _hw

PROTOCOL_TLS_CLIENT = 0
PROTOCOL_TLS_SERVER = 1
CERT_NONE = 0
_REQUIRED = 2
_VERIFY = {0: _ssl.CERT_NONE, 1: _ssl.CERT_OPTIONAL, _REQUIRED: _ssl.CERT_REQUIRED}
_HARDWARE = _hw.current()
if _HARDWARE is None or _HARDWARE.platform != "esp8266":
    CERT_OPTIONAL = 1
    CERT_REQUIRED = _REQUIRED


class SSLContext:
    def __init__(self, protocol):
        if protocol != PROTOCOL_TLS_CLIENT:
            raise NotImplementedError("the board is a TLS client only")
        self.verify_mode = CERT_NONE
        self._cadata = None

    def load_verify_locations(self, cadata):
        self._cadata = bytes(cadata)

    def wrap_socket(
        self, sock, server_side=False, do_handshake_on_connect=True, server_hostname=None
    ):
        if server_side or not do_handshake_on_connect:
            raise NotImplementedError("a client with its handshake at once only")
        if self.verify_mode == _REQUIRED and server_hostname is None:
            raise ValueError("CERT_REQUIRED requires server_hostname")  # as MicroPython's
        context = _ssl.SSLContext(_ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = self.verify_mode == _REQUIRED
        context.verify_mode = _VERIFY[self.verify_mode]
        if self._cadata is not None:
            context.load_verify_locations(cadata=self._cadata)
        wrapped = context.wrap_socket(sock._sock, server_hostname=server_hostname)
        if self.verify_mode == _REQUIRED and _HARDWARE is not None:
            try:
                _check_dates(wrapped.getpeercert(), _hw.now_s() + _hw.epoch())
            except ValueError:
                wrapped.close()
                raise
        sock._sock = wrapped
        return sock


def _check_dates(cert, now):
    # mbedTLS's words (its MBEDTLS_X509_BADCERT_FUTURE and _EXPIRED).
    if now < _ssl.cert_time_to_seconds(cert["notBefore"]):
        raise ValueError("\nThe certificate validity starts in the future\n")
    if now > _ssl.cert_time_to_seconds(cert["notAfter"]):
        raise ValueError("\nThe certificate validity has expired\n")
