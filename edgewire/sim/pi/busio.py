"""blinka's `busio.I2C` for the simulated Pi, over the I2C bus of
`edgewire.sim.pi.current()`.

blinka's bus moves raw bytes (a write, a read); register access is the
chip's business: the first byte written sets its register pointer, the rest
are written from there, and reads go on from the pointer. This module is
that chip side of the wire for the register models of edgewire.sim.hardware,
which only know reads and writes at a register.
"""

import errno
import threading
from types import TracebackType

from edgewire.sim.hardware import I2CBus
from edgewire.sim.pi import board, current


class I2C:
    """busio.I2C's methods, as adafruit_bus_device calls them."""

    def __init__(self, scl: board.Pin, sda: board.Pin, frequency: int = 100_000) -> None:
        if (scl, sda) != (board.SCL, board.SDA):
            raise ValueError(f"No Hardware I2C on (scl,sda)={(scl, sda)}")
        self.frequency = frequency
        self._bus: I2CBus | None = current().i2c
        self._lock = threading.Lock()
        self._pointer: dict[int, int] = {}

    def try_lock(self) -> bool:
        return self._lock.acquire(blocking=False)

    def unlock(self) -> None:
        self._lock.release()

    def deinit(self) -> None:
        self._bus = None

    def __enter__(self) -> "I2C":
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.deinit()

    def scan(self) -> list[int]:
        return self._wire().scan()

    def writeto(
        self,
        address: int,
        buffer: bytes | bytearray | memoryview,
        *,
        start: int = 0,
        end: int | None = None,
    ) -> None:
        data = bytes(buffer[start:end])
        bus = self._wire()
        if not data:  # a probe: does anything acknowledge the address?
            bus.readfrom_mem(address, 0, 0)
            return
        register = data[0]
        self._pointer[address] = register
        if len(data) > 1:
            bus.writeto_mem(address, register, data[1:])
        else:
            bus.readfrom_mem(address, register, 0)  # NACKed when nothing is there

    def readfrom_into(
        self,
        address: int,
        buffer: bytearray | memoryview,
        *,
        start: int = 0,
        end: int | None = None,
    ) -> None:
        stop = len(buffer) if end is None else end
        count = stop - start
        register = self._pointer.get(address, 0)
        data = self._wire().readfrom_mem(address, register, count)
        buffer[start:stop] = data.ljust(count, b"\xff")  # past the last register: bus idle
        self._pointer[address] = (register + count) & 0xFF

    def writeto_then_readfrom(
        self,
        address: int,
        buffer_out: bytes | bytearray | memoryview,
        buffer_in: bytearray | memoryview,
        *,
        out_start: int = 0,
        out_end: int | None = None,
        in_start: int = 0,
        in_end: int | None = None,
        stop: bool = False,
    ) -> None:
        self.writeto(address, buffer_out, start=out_start, end=out_end)
        self.readfrom_into(address, buffer_in, start=in_start, end=in_end)

    def _wire(self) -> I2CBus:
        if self._bus is None:
            raise OSError(errno.ENODEV, "the I2C bus has been deinitialised")
        return self._bus
