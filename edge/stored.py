"""How far each board's samples are durable at the edge: the `stored` watermark.

Rule: the edge tells a board `{"boot": B, "seq": S}` only when every sample of
boot B with a seq up to S that the board may still hold is durably buffered
here, because the board deletes what the message covers. The watermark moves
in two ways only:

1. a durable sample with seq = watermark + 1 (gaps are filled as the rest
   arrives, in any order);
2. the board's `lo` hint: the board holds nothing of this boot below `lo`
   (it was covered before, or the board's ring dropped it and counted it), so
   claiming coverage up to `lo - 1` cannot make it delete anything undurable.

Without a hint the first seq of a boot is 0. The watermarks are themselves
made durable, in the same commit as the samples that moved them (see
`take_changed`), so an edge that restarts knows what it already holds even
for samples it will never see again. Sans-IO: the caller passes `now` and
publishes what `due()` returns.
"""

from dataclasses import dataclass, field
from typing import NamedTuple

# Boots of one device remembered at once; a board only ever resends its
# current and maybe its previous boot.
_BOOTS_PER_DEVICE = 4
# Out-of-order seqs above a gap remembered per boot; past this the newest
# are not recorded (they are durable; only the claim waits for a `lo`).
_MAX_PENDING = 4096


class Mark(NamedTuple):
    """A watermark as it is persisted; `mark` None means "forget this boot"."""

    device_id: str
    boot: int
    mark: int | None
    pending: tuple[int, ...] = ()


@dataclass
class _Boot:
    mark: int = -1  # every seq <= mark is covered
    pending: set[int] = field(default_factory=set)
    announced: int = -1  # the mark last told to the board


@dataclass
class _Device:
    boots: dict[int, _Boot] = field(default_factory=dict)
    last_sent_at: float = float("-inf")


class StoredTracker:
    """Per-device durable watermarks and when to announce them."""

    def __init__(self, min_interval_s: float = 1.0) -> None:
        self._min_interval_s = min_interval_s
        self._devices: dict[str, _Device] = {}
        self._changed: dict[tuple[str, int], Mark] = {}

    def restore(self, marks: list[Mark]) -> None:
        """Load persisted watermarks (at start-up, before any `durable`)."""
        for m in sorted(marks, key=lambda m: (m.device_id, m.boot)):
            if m.mark is not None:
                state = self._boot(m.device_id, m.boot)
                state.mark = m.mark
                state.pending = set(m.pending)
        self._changed.clear()

    def durable(self, device_id: str, boot: int, seq: int, lo: int | None = None) -> None:
        """Record that this sample is (about to be) committed to the buffer."""
        state = self._boot(device_id, boot)
        before = (state.mark, len(state.pending))
        if lo is not None and lo - 1 > state.mark:
            state.mark = lo - 1
            state.pending = {s for s in state.pending if s > state.mark}
        if seq <= state.mark:
            if seq <= state.announced:
                # The board sent again what it was told is covered: it missed
                # that message (it was away), so say it again.
                state.announced = -1
        elif seq == state.mark + 1:
            state.mark = seq
            while state.mark + 1 in state.pending:
                state.mark += 1
                state.pending.discard(state.mark)
        elif len(state.pending) < _MAX_PENDING:
            state.pending.add(seq)
        if (state.mark, len(state.pending)) != before:
            key = (device_id, boot)
            self._changed[key] = Mark(device_id, boot, state.mark, tuple(sorted(state.pending)))

    def take_changed(self) -> list[Mark]:
        """Watermarks changed since the last call: persist them with the
        samples that moved them."""
        changed = list(self._changed.values())
        self._changed.clear()
        return changed

    def reannounce(self, device_id: str) -> None:
        """The board (re)connected: it may have missed earlier announcements."""
        device = self._devices.get(device_id)
        if device is not None:
            for state in device.boots.values():
                state.announced = -1

    def mark(self, device_id: str, boot: int) -> int:
        """The highest seq covered for this boot (-1: none yet)."""
        device = self._devices.get(device_id)
        if device is None or boot not in device.boots:
            return -1
        return device.boots[boot].mark

    def due(self, now: float) -> list[tuple[str, int, int]]:
        """(device, boot, seq) announcements to publish now, at most one per
        device per `min_interval_s`, only when the mark moved."""
        out: list[tuple[str, int, int]] = []
        for device_id, device in self._devices.items():
            if now - device.last_sent_at < self._min_interval_s:
                continue
            for boot, state in device.boots.items():
                if state.mark > state.announced:
                    out.append((device_id, boot, state.mark))
                    state.announced = state.mark
                    device.last_sent_at = now
        return out

    def _boot(self, device_id: str, boot: int) -> _Boot:
        device = self._devices.get(device_id)
        if device is None:
            device = self._devices[device_id] = _Device()
        state = device.boots.get(boot)
        if state is None:
            if len(device.boots) >= _BOOTS_PER_DEVICE:
                oldest = min(device.boots)
                del device.boots[oldest]
                self._changed[(device_id, oldest)] = Mark(device_id, oldest, None)
            state = device.boots[boot] = _Boot()
        return state
