"""Prometheus metrics of the edge agent (one registry per process)."""

from prometheus_client import Counter, Gauge, Histogram

MESSAGES = Counter("edgewire_edge_mqtt_messages", "MQTT messages received", ["kind"])
SAMPLES_BUFFERED = Counter("edgewire_edge_samples_buffered", "Samples committed to the buffer")
DEAD_LETTERS = Counter(
    "edgewire_edge_dead_letters", "Payloads rejected into the dead-letter store", ["reason"]
)
SAMPLES_DROPPED = Counter(
    "edgewire_edge_samples_dropped", "Buffered samples dropped before delivery", ["reason"]
)
SAMPLES_DELIVERED = Counter(
    "edgewire_edge_samples_delivered", "Samples the cloud acknowledged (then deleted here)"
)
COMMIT_SECONDS = Histogram(
    "edgewire_edge_commit_seconds",
    "Time of one group commit to the buffer",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
)
COMMIT_ERRORS = Counter("edgewire_edge_commit_errors", "Group commits that failed and were retried")
BUFFER_RECORDS = Gauge("edgewire_edge_buffer_records", "Samples waiting in the buffer")
BUFFER_OLDEST_AGE = Gauge(
    "edgewire_edge_buffer_oldest_age_seconds", "Age of the oldest buffered sample (0: empty)"
)
MQTT_CONNECTED = Gauge("edgewire_edge_mqtt_connected", "1 while connected to the broker")
UPLINK_CONNECTED = Gauge("edgewire_edge_uplink_connected", "1 while the cloud stream is up")
UPLINK_RECONNECTS = Counter(
    "edgewire_edge_uplink_reconnects", "Cloud stream (re)connection attempts"
)
STORED_SENT = Counter("edgewire_edge_stored_sent", "`stored` watermarks published to boards")
BACKPRESSURE = Gauge(
    "edgewire_edge_backpressure", "1 while the buffer is full and MQTT messages are held"
)
BACKPRESSURE_EPISODES = Counter(
    "edgewire_edge_backpressure_episodes", "Times the buffer filled under the backpressure policy"
)
BUFFER_BYTES = Gauge("edgewire_edge_buffer_bytes", "Bytes of samples waiting in the buffer")
BUFFER_QUARANTINED = Counter(
    "edgewire_edge_buffer_quarantined", "Damaged buffer files moved aside at start-up"
)
BACKLOG_DRAIN_RATE = Gauge(
    "edgewire_edge_delivery_rate", "Samples per second the cloud acknowledges, smoothed"
)
BACKLOG_DRAIN_ETA = Gauge(
    "edgewire_edge_backlog_drain_eta_seconds",
    "Estimated seconds until the buffer is empty at the current delivery rate (-1: not draining)",
)
BATCHES_SENT = Counter("edgewire_edge_batches_sent", "Batches sent to the cloud", ["lane"])
COMMANDS = Counter(
    "edgewire_edge_commands",
    "Board commands: received from the cloud, delivered to the broker, answered by boards",
    ["step"],
)
COMMAND_ANSWERS_UNKNOWN = Counter(
    "edgewire_edge_command_answers_unknown", "Board answers to no command held at this edge"
)
