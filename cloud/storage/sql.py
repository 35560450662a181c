"""What the SQL implementations (SQLite, PostgreSQL) share: the per-device
summaries of newly stored samples, and reading the device list, whose SQL
is the same in both."""

from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from cloud.storage.base import DeviceRow, EdgeStats, ReadingsQuery
from edgewire.sample import StoredSample

# Written with SQLite's `?` placeholders; pg() turns them into psycopg's.
SET_STATUS = (
    "INSERT INTO devices (id, status, status_at, edge_id) VALUES (?, ?, ?, ?)"
    " ON CONFLICT (id) DO UPDATE SET status = excluded.status,"
    " status_at = excluded.status_at,"
    " edge_id = coalesce(excluded.edge_id, devices.edge_id)"
    " WHERE coalesce(devices.status_at, 0) <= excluded.status_at"
)
SET_EDGE_STATS = (
    "INSERT INTO edges (id, at, buffered, oldest_age_s, delivery_rate)"
    " VALUES (?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET at = excluded.at,"
    " buffered = excluded.buffered, oldest_age_s = excluded.oldest_age_s,"
    " delivery_rate = excluded.delivery_rate WHERE edges.at <= excluded.at"
)


def pg(sql: str) -> str:
    return sql.replace("?", "%s")


def edge_stats_row(stats: EdgeStats) -> tuple[str, float, int, float, float]:
    return (stats.edge_id, stats.at, stats.buffered, stats.oldest_age_s, stats.delivery_rate)


def where_clause(query: ReadingsQuery) -> tuple[str, list[object]]:
    """The WHERE of a readings query (`?` placeholders), and its parameters."""
    where: list[str] = []
    params: list[object] = []
    for clause, value in (
        ("device_id = ?", query.device),
        ("metric = ?", query.metric),
        ("ts >= ?", query.since),
        ("ts < ?", query.until),
    ):
        if value is not None:
            where.append(clause)
            params.append(value)
    return (" WHERE " + " AND ".join(where) if where else ""), params


class Executes(Protocol):
    def execute(self, query: Any) -> Iterable[Sequence[Any]]: ...


def summaries(
    stored: Sequence[StoredSample],
) -> tuple[list[tuple[str, float, int]], list[tuple[str, str]]]:
    """(device, newest ts, samples) per device, and the (device, metric)
    pairs, of a batch of newly stored samples."""
    per_device: dict[str, tuple[int, float]] = {}
    names: set[tuple[str, str]] = set()
    for event in stored:
        s = event.sample
        count, last = per_device.get(s.device_id, (0, s.ts))
        per_device[s.device_id] = (count + 1, max(last, s.ts))
        names.update((s.device_id, name) for name in s.m)
    devices = [(device_id, last, count) for device_id, (count, last) in per_device.items()]
    return devices, sorted(names)


def read_devices(db: Executes) -> list[DeviceRow]:
    metrics: dict[str, list[str]] = {}
    for device_id, metric in db.execute(
        "SELECT device_id, metric FROM device_metrics ORDER BY device_id, metric"
    ):
        metrics.setdefault(device_id, []).append(metric)
    return [
        DeviceRow(
            id=r[0],
            status=r[1],
            last_seen=r[2],
            metrics=metrics.get(r[0], []),
            samples=r[3],
            edge=r[4],
            edge_buffered=r[5],
            edge_oldest_age_s=r[6],
            edge_reported_at=r[7],
        )
        for r in db.execute(
            "SELECT d.id, d.status, d.last_seen, d.samples, d.edge_id, e.buffered,"
            " e.oldest_age_s, e.at FROM devices d LEFT JOIN edges e ON e.id = d.edge_id"
            " ORDER BY d.id"
        )
    ]
