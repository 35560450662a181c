"""Which web pages may open the cloud's WebSocket feed or change something
(cross-site WebSocket hijacking and request forgery, docs/security.md).

Rule: a request that carries an `Origin` header (browsers send one with
every WebSocket upgrade and every POST) is let through only when that origin
is the cloud's own (same host and port as the request's `Host`) or listed in
`allowed_origins`. A request without one comes from a program, not a page,
and is judged by its token alone. Plain functions of header values: no I/O.
"""

from urllib.parse import urlsplit

Origin = tuple[str, str, int]  # (scheme, host in lower case, port)

_DEFAULT_PORTS = {"http": 80, "https": 443}


def parse_origin(text: str) -> Origin:
    """`https://Dash.example.org` → ("https", "dash.example.org", 443);
    ValueError says why a text is not an http(s) origin."""
    try:
        parts = urlsplit(text.strip())
        port = parts.port
    except ValueError:
        raise ValueError(f"{text[:100]!r} is not an origin") from None
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
        raise ValueError(
            f"{text[:100]!r} is not an origin: it needs http:// or https:// and a host"
        )
    if parts.path not in ("", "/") or parts.query or parts.fragment or "@" in parts.netloc:
        raise ValueError(
            f"{text[:100]!r} is not an origin: only scheme, host and port (no path or user)"
        )
    return parts.scheme, parts.hostname, port if port is not None else _DEFAULT_PORTS[parts.scheme]


def origin_allowed(origin: str, host: str | None, allowed: frozenset[Origin]) -> bool:
    """May a page of `origin` use the API reached as `host` (the Host
    header)? An unparsable origin (`null`, from a sandboxed frame or a
    file) may not."""
    try:
        scheme, name, port = parse_origin(origin)
    except ValueError:
        return False
    if (scheme, name, port) in allowed:
        return True
    if host is None:
        return False
    try:
        reached = urlsplit("//" + host)
        reached_port = reached.port
    except ValueError:
        return False
    if reached.hostname != name:
        return False
    # A Host without a port was reached on its scheme's default one; the
    # scheme is not compared, as a TLS proxy in front sees https where the
    # cloud sees http.
    return port == (reached_port if reached_port is not None else _DEFAULT_PORTS[scheme])
