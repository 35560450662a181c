"""What the SQL implementations (SQLite, PostgreSQL) share: the per-device
summaries of newly stored samples, reading the device list, and the board
commands, whose SQL is the same in both."""

from collections.abc import Iterable, Sequence
from typing import Any, Protocol

import msgspec

from cloud.storage.base import CommandRow, DeviceRow, EdgeStats, ReadingsQuery
from edgewire.downlink import FINAL, STATES, states_before
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

# Commands: the command is JSON text in both databases, kept as the user sent it.
COMMAND_COLUMNS = "id, device_id, command, state, created_at, updated_at, expires_at, error"
ADD_COMMAND = f"INSERT INTO commands ({COMMAND_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
_TO_EDGE = ("queued", "at_edge")
_OPEN = tuple(state for state in STATES if state not in FINAL)
COMMANDS_FOR_EDGE = (
    f"SELECT {COMMAND_COLUMNS} FROM commands WHERE state IN (?, ?) AND expires_at > ?"
    " AND device_id IN (SELECT id FROM devices WHERE edge_id = ?)"
    " ORDER BY created_at, id LIMIT ?"
)
# The state is tested again outside the subquery so that in PostgreSQL a
# concurrent expiry (which rechecks only the outer WHERE on a row it waited
# for) cannot expire, and return, the same command twice. It is NOT IN there
# so that SQLite finds the rows by id rather than walking every open command.
EXPIRE_COMMANDS = (
    "UPDATE commands SET state = ?, error = ?, updated_at = ?"
    f" WHERE state NOT IN ({', '.join('?' * len(FINAL))}) AND id IN (SELECT id FROM commands"
    f" WHERE state IN ({', '.join('?' * len(_OPEN))}) AND expires_at <= ?"
    f" ORDER BY expires_at, id LIMIT ?) RETURNING {COMMAND_COLUMNS}"
)

_encode_command = msgspec.json.encode
_decode_command = msgspec.json.Decoder(dict[str, Any]).decode


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


def command_params(row: CommandRow) -> tuple[object, ...]:
    """ADD_COMMAND's parameters."""
    return (
        row.id,
        row.device,
        _encode_command(row.command).decode(),
        row.state,
        row.created_at,
        row.updated_at,
        row.expires_at,
        row.error,
    )


def command_row(r: Sequence[Any]) -> CommandRow:
    """A CommandRow from the COMMAND_COLUMNS of a result row."""
    return CommandRow(r[0], r[1], _decode_command(r[2]), r[3], r[4], r[5], r[6], r[7])


def update_command(
    command_id: str, device_id: str, state: str, at: float, error: str | None
) -> tuple[str, list[object]] | None:
    """The one UPDATE that moves a command forward, and its parameters; None
    when no state may precede `state` (nothing can move to it)."""
    before = states_before(state)
    if not before:
        return None
    return (
        "UPDATE commands SET state = ?, updated_at = ?, error = ?"
        f" WHERE id = ? AND device_id = ? AND state IN ({', '.join('?' * len(before))})"
        f" RETURNING {COMMAND_COLUMNS}",
        [state, at, error, command_id, device_id, *before],
    )


def commands_for_edge_params(edge_id: str, now: float, limit: int) -> list[object]:
    return [*_TO_EDGE, now, edge_id, limit]


def expire_params(now: float, limit: int) -> list[object]:
    return ["expired", "deadline passed", now, *sorted(FINAL), *_OPEN, now, limit]


def list_commands(device: str | None, limit: int) -> tuple[str, list[object]]:
    """The newest commands, of one board or all: SQL and parameters."""
    where, params = ("", []) if device is None else (" WHERE device_id = ?", [device])
    sql = f"SELECT {COMMAND_COLUMNS} FROM commands{where}"
    return sql + " ORDER BY created_at DESC, id DESC LIMIT ?", [*params, limit]
