# TLS for the broker link: what a board does when config.json's broker says
# "tls": true (an mqtts:// broker). Loaded only then, so a board on plain
# MQTT carries none of it in its heap.
#
# Rule: the broker's certificate is always checked, against the project CA
# (ca.der, which `edgewire flash` copies onto the board), for the host name
# the board dials, and for its dates (MicroPython's mbedTLS checks them
# against the board's clock: an unset one is set by NTP first). A board that
# cannot check it does not connect: there is no unverified mode.
#
# umqtt.simple 1.3.4 has one place for TLS: right after its TCP connect it
# calls `ussl.wrap_socket(sock, **ssl_params)`. MicroPython 1.22 renamed that
# module (the unix port has no old name at all), so this module registers
# itself as `ussl`, and use() points a client's ssl_params at it.
#
# `tls` is the module under MicroPython's `ssl` (1.22 and later): its
# SSLContext is what `ssl` would build, without the Python layer over it
# (about 1 KB of heap less). On CPython, edgewire/sim/shims/tls.py stands in.

import sys

try:
    import tls
except ImportError:  # MicroPython before 1.22
    tls = None

CA = "ca.der"  # the CA's certificate, DER: the board parses no PEM


def context(board, ntp):
    """What use() takes: the TLS context every connection of this start
    uses, the CA parsed into it once (made at start, while the heap is in
    one piece: one block of about 3 KB on the 64-bit unix port), with the
    board and its NTP server (None: the board's default) for its clock."""
    if tls is None or not hasattr(tls, "CERT_REQUIRED"):
        # An ESP8266's axTLS takes no CA and checks no certificate.
        raise OSError("mqtts: this board's TLS cannot check certificates")
    ca = board.read(CA)
    if not ca:
        raise OSError("mqtts: no CA certificate on the board (%s): flash with --ca" % CA)
    ctx = tls.SSLContext(tls.PROTOCOL_TLS_CLIENT)
    ctx.verify_mode = tls.CERT_REQUIRED
    ctx.load_verify_locations(ca)
    return ctx, board, ntp


def use(client, setup):
    """Have umqtt.simple `client` connect over TLS (`setup`: context()'s)."""
    client.ssl = True
    client.ssl_params = {"client": client}
    client.tls = setup


def wrap_socket(sock, client):
    # umqtt.simple's call (ussl.wrap_socket(sock, **ssl_params)). client.raw
    # keeps the TCP socket: MicroPython's TLS socket has no settimeout, so
    # timeouts go there.
    ctx, board, ntp = client.tls
    if board.unix_ms() is None:
        # The clock is unset (a board after a power cut): the certificate
        # would look not yet valid. The app sets it once online; TLS needs
        # it before. Failing that, the handshake says so, and it is retried.
        try:
            board.sync_clock(ntp)
        except (OSError, OverflowError) as e:
            print("edgewire:", "ntp", e)
    client.raw = sock
    try:
        return ctx.wrap_socket(sock, server_hostname=client.server)
    except ValueError as e:
        # A certificate that does not check: mbedTLS says why on lines of
        # their own; the app logs it as one line, and tries again later.
        raise OSError("TLS: " + " ".join(str(e).split()))


sys.modules["ussl"] = sys.modules[__name__]
