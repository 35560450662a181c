"""In-memory storage: the reference model for the storage contract tests."""

import math
from collections.abc import Sequence

import msgspec

from cloud.storage.base import (
    Bucket,
    CommandRow,
    DeviceRow,
    EdgeStats,
    InsertResult,
    Reading,
    ReadingsQuery,
)
from edgewire.downlink import FINAL, may_follow
from edgewire.sample import Sample, SampleKey, StoredSample


class MemoryStorage:
    def __init__(self) -> None:
        self._samples: list[StoredSample] = []
        self._keys: set[SampleKey] = set()
        self._status: dict[str, tuple[float, str]] = {}
        self._last_id = 0
        self._counts: dict[str, int] = {}  # samples stored per device, ever
        self._edge_of: dict[str, str] = {}
        self._edges: dict[str, EdgeStats] = {}
        self._commands: dict[str, CommandRow] = {}

    def insert(self, samples: Sequence[Sample], received_at: float) -> InsertResult:
        stored: list[StoredSample] = []
        duplicates = 0
        for sample in samples:
            if sample.key in self._keys:
                duplicates += 1
                continue
            self._keys.add(sample.key)
            self._counts[sample.device_id] = self._counts.get(sample.device_id, 0) + 1
            self._last_id += 1
            event = StoredSample(id=self._last_id, sample=sample)
            self._samples.append(event)
            stored.append(event)
        return InsertResult(stored=stored, duplicates=duplicates)

    def set_status(self, device_id: str, status: str, at: float, edge_id: str | None) -> None:
        if at >= self._status.get(device_id, (float("-inf"), ""))[0]:
            self._status[device_id] = (at, status)
            if edge_id is not None:
                self._edge_of[device_id] = edge_id

    def set_edge_stats(self, stats: EdgeStats) -> None:
        held = self._edges.get(stats.edge_id)
        if held is None or stats.at >= held.at:
            self._edges[stats.edge_id] = stats

    def devices(self) -> list[DeviceRow]:
        ids = sorted({e.sample.device_id for e in self._samples} | set(self._status))
        rows = []
        for device_id in ids:
            mine = [e.sample for e in self._samples if e.sample.device_id == device_id]
            edge_id = self._edge_of.get(device_id)
            stats = self._edges.get(edge_id) if edge_id is not None else None
            rows.append(
                DeviceRow(
                    id=device_id,
                    status=self._status.get(device_id, (0.0, "offline"))[1],
                    last_seen=max((s.ts for s in mine), default=None),
                    metrics=sorted({name for s in mine for name in s.m}),
                    samples=self._counts.get(device_id, 0),
                    edge=edge_id,
                    edge_buffered=None if stats is None else stats.buffered,
                    edge_oldest_age_s=None if stats is None else stats.oldest_age_s,
                    edge_reported_at=None if stats is None else stats.at,
                )
            )
        return rows

    def readings(self, query: ReadingsQuery) -> list[Reading]:
        return self._matching(query)[: query.limit]

    def _matching(self, query: ReadingsQuery) -> list[Reading]:
        """Every reading the query's filters match (its limit aside), in order."""
        out = [
            Reading(s.device_id, s.boot, s.seq, s.ts, metric, value)
            for s in (e.sample for e in self._samples)
            if (query.device is None or s.device_id == query.device)
            and (query.since is None or s.ts >= query.since)
            and (query.until is None or s.ts < query.until)
            for metric, value in sorted(s.m.items())
            if query.metric is None or metric == query.metric
        ]
        out.sort(key=lambda r: (r.ts, r.device, r.boot, r.seq, r.metric))
        return out

    def downsample(self, query: ReadingsQuery, every_s: float) -> list[Bucket]:
        series: dict[tuple[float, str, str], list[float]] = {}
        for r in self._matching(query):
            start = math.floor(r.ts / every_s) * every_s
            series.setdefault((start, r.device, r.metric), []).append(float(r.value))
        return [
            Bucket(device, metric, start, len(v), min(v), sum(v) / len(v), max(v))
            for (start, device, metric), v in sorted(series.items())
        ][: query.limit]

    def delete_before(self, ts: float, limit: int) -> int:
        old = [e for e in self._samples if e.sample.ts < ts][:limit]
        gone = {id(e) for e in old}
        self._samples = [e for e in self._samples if id(e) not in gone]
        self._keys -= {e.sample.key for e in old}
        return len(old)

    def samples_after(
        self, after_id: int, devices: frozenset[str] | None, limit: int
    ) -> list[StoredSample]:
        return [
            e
            for e in self._samples
            if e.id > after_id and (devices is None or e.sample.device_id in devices)
        ][:limit]

    def add_command(self, row: CommandRow) -> None:
        if row.id in self._commands:  # as the SQL stores' primary key would
            raise ValueError(f"command {row.id} exists")
        self._commands[row.id] = row

    def update_command(
        self, command_id: str, device_id: str, state: str, at: float, error: str | None
    ) -> CommandRow | None:
        held = self._commands.get(command_id)
        if held is None or held.device != device_id or not may_follow(held.state, state):
            return None
        row = msgspec.structs.replace(held, state=state, updated_at=at, error=error)
        self._commands[command_id] = row
        return row

    def commands_for_edge(self, edge_id: str, now: float, limit: int) -> list[CommandRow]:
        return sorted(
            (
                c
                for c in self._commands.values()
                if c.state in ("queued", "at_edge")
                and c.expires_at > now
                and self._edge_of.get(c.device) == edge_id
            ),
            key=lambda c: (c.created_at, c.id),
        )[:limit]

    def commands(self, device: str | None, limit: int) -> list[CommandRow]:
        return sorted(
            (c for c in self._commands.values() if device is None or c.device == device),
            key=lambda c: (c.created_at, c.id),
            reverse=True,
        )[:limit]

    def expire_commands(self, now: float, limit: int) -> list[CommandRow]:
        due = sorted(
            (c for c in self._commands.values() if c.state not in FINAL and c.expires_at <= now),
            key=lambda c: (c.expires_at, c.id),
        )[:limit]
        expired = []
        for held in due:
            row = msgspec.structs.replace(
                held, state="expired", error="deadline passed", updated_at=now
            )
            self._commands[row.id] = row
            expired.append(row)
        return expired

    def close(self) -> None:
        self._samples.clear()
