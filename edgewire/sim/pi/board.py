"""blinka's `board` for the simulated Pi: the names of the I2C pins."""

from dataclasses import dataclass


@dataclass(frozen=True)
class Pin:
    id: int  # BCM number, as blinka's Pin has it


SDA = Pin(2)  # header pin 3
SCL = Pin(3)  # header pin 5
