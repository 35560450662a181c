"""Counting and logging what the cloud refuses for a size or count limit.

Each refusal is counted in edgewire_cloud_limit_refused_total{limit}; the log
says so once a minute per (limit, address) at most, as a client over a limit
usually keeps trying.
"""

from cloud import metrics
from edgewire.logs import LogThrottle, get_logger

log = get_logger("cloud.limits")


class RefusalLog:
    def __init__(self) -> None:
        self._throttle = LogThrottle()

    def refused(self, limit: str, address: str, **details: object) -> None:
        metrics.LIMIT_REFUSED.labels(limit).inc()
        if self._throttle.due((limit, address)):
            log.warning("refused for a limit", limit=limit, client=address, **details)


REFUSALS = RefusalLog()


def grpc_peer_address(peer: str) -> str:
    """The address of a gRPC peer string: "ipv4:10.0.0.5:51234" → "10.0.0.5",
    "ipv6:[::1]:51234" → "::1"."""
    kind, _, rest = peer.partition(":")
    if kind == "ipv6" and rest.startswith("["):
        return rest[1:].partition("]")[0]
    if kind == "ipv4":
        return rest.rpartition(":")[0]
    return peer
