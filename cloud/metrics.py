"""Prometheus metrics of the cloud process (one registry per process)."""

from prometheus_client import Counter, Gauge, Histogram

SAMPLES_STORED = Counter("edgewire_cloud_samples_stored", "Samples newly committed to storage")
SAMPLES_DUPLICATE = Counter(
    "edgewire_cloud_samples_duplicate", "Samples received again and acknowledged without storing"
)
BATCHES = Counter("edgewire_cloud_batches", "Batches acknowledged to edges")
BATCH_ERRORS = Counter(
    "edgewire_cloud_batch_errors", "Batches that could not be committed (not acknowledged)"
)
COMMIT_SECONDS = Histogram(
    "edgewire_cloud_commit_seconds",
    "Time to commit one batch to storage",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
)
EDGE_STREAMS = Gauge("edgewire_cloud_edge_streams", "Edge Ingest streams connected")
SUBSCRIBERS = Gauge("edgewire_cloud_subscribers", "Live-feed subscribers (SSE, WebSocket and gRPC)")
SUBSCRIBERS_DROPPED = Counter(
    "edgewire_cloud_subscribers_dropped", "Subscribers cut off because they fell behind"
)
BAD_REQUESTS = Counter(
    "edgewire_cloud_bad_requests", "API requests refused as malformed", ["endpoint"]
)
SAMPLES_REFUSED = Counter(
    "edgewire_cloud_samples_refused", "Samples from an edge that broke the contract (not stored)"
)
RETENTION_DELETED = Counter(
    "edgewire_cloud_retention_deleted", "Samples deleted because they were older than --retain"
)
BUS_MESSAGES_IGNORED = Counter(
    "edgewire_cloud_bus_messages_ignored", "AMQP bus messages that could not be read"
)
EDGE_STATS_REFUSED = Counter(
    "edgewire_cloud_edge_stats_refused", "Edge buffer figures refused as nonsense"
)
WS_CLIENTS = Gauge("edgewire_cloud_ws_clients", "WebSocket feed clients connected")
COMMANDS = Counter("edgewire_cloud_commands", "Board commands reaching each state", ["state"])
COMMAND_UPDATES_IGNORED = Counter(
    "edgewire_cloud_command_updates_ignored",
    "Command updates from edges that were malformed or not forward of the state held",
)
EDGES_REFUSED = Counter(
    "edgewire_cloud_edges_refused",
    "Edge streams refused after the TLS handshake (certificate, edge id, edge_devices)",
    ["reason"],
)
FOREIGN_DEVICE = Counter(
    "edgewire_cloud_foreign_device",
    "Samples, statuses and command answers refused: for a board the edge does not own",
    ["edge"],
)
HTTP_REFUSED = Counter(
    "edgewire_cloud_http_refused",
    "API, feed and metrics requests refused, or open feeds ended, for their token or"
    " origin (missing, unknown, scope, revoked, origin)",
    ["reason"],
)
LIMIT_REFUSED = Counter(
    "edgewire_cloud_limit_refused",
    "Connections, feeds, bodies, frames and gRPC messages refused for a size or count limit",
    ["limit"],
)
