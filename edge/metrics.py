"""Prometheus metrics of the edge agent (one registry per process)."""

from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING

from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from edge.rules import RuleCounters

if TYPE_CHECKING:  # the Pi's own sensors are loaded only when configured
    from edge.gpio.local import LocalStats

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
UPLINK_REFUSED = Counter(
    "edgewire_edge_uplink_refused",
    "Cloud streams the cloud refused (certificate, edge id, edge_devices), by gRPC status",
    ["status"],
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
RELOADS = Counter("edgewire_edge_reloads", "Config reloads (SIGHUP), by outcome", ["outcome"])
SAMPLES_FILTERED = Counter(
    "edgewire_edge_samples_filtered",
    "Samples the rules reduced to nothing (every metric dropped, deadbanded, downsampled"
    " or folded into an aggregate); per rule figures are in edgewire_edge_rule_*",
)


# The per-rule counters the rules engine keeps (edge/rules, RuleCounters).
_RULE_FIGURES = {
    "samples_seen": "Samples with a metric the rule matched",
    "metrics_dropped": "Metrics the rule removed (range, deadband, interval, aggregate)",
    "metrics_changed": "Metrics the rule gave a new value or name",
    "metrics_flagged": "Out-of-range metrics the rule kept and flagged",
    "windows_emitted": "Aggregate windows the rule reported",
    "errors": "Values the rule could not handle (left out, counted)",
    "series_evicted": "Series the rule forgot to stay within its memory bound",
}


class RuleCollector(Collector):
    """Reads the running rules' counters at each scrape (no copying per sample)."""

    def __init__(self, counters: Callable[[], list[RuleCounters]]) -> None:
        self._counters = counters

    def collect(self) -> Iterator[CounterMetricFamily]:
        rows = self._counters()
        for figure, meaning in _RULE_FIGURES.items():
            family = CounterMetricFamily(f"edgewire_edge_rule_{figure}", meaning, labels=["rule"])
            for row in rows:
                family.add_metric([row.rule], getattr(row, figure))
            yield family


class LastSeenCollector(Collector):
    """When the edge last heard from each board, read at each scrape."""

    def __init__(self, last_seen: Mapping[str, float]) -> None:
        self._last_seen = last_seen

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "edgewire_edge_device_last_seen_timestamp_seconds",
            "When the edge last heard from each board (Unix seconds)",
            labels=["device"],
        )
        for device_id, at in sorted(dict(self._last_seen).items()):  # a copy: MQTT adds to it
            family.add_metric([device_id], at)
        yield family


class LocalDeviceCollector(Collector):
    """The Pi's own sensors, LED and button (edge/gpio), read at each scrape."""

    def __init__(self, stats: "LocalStats") -> None:
        self._stats = stats

    def collect(self) -> Iterator[CounterMetricFamily]:
        stats = self._stats
        for name, meaning, value in (
            ("samples", "Readings of the Pi's own sensors handed in", stats.samples),
            ("empty_readings", "Turns when every sensor of the Pi failed", stats.empty_readings),
            ("reads_skipped", "Turns skipped while a read hung on the bus", stats.reads_skipped),
            ("button_presses", "Presses of the flush button", stats.button_presses),
            ("gpio_errors", "Times the LED or button could not be set up", stats.gpio_errors),
        ):
            yield CounterMetricFamily(f"edgewire_edge_local_{name}", meaning, value=value)
        failures = CounterMetricFamily(
            "edgewire_edge_local_sensor_failures", "Failed reads per sensor", labels=["sensor"]
        )
        for sensor, count in sorted(stats.sensor_failures.items()):
            failures.add_metric([sensor], count)
        yield failures
