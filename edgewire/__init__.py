"""edgewire: telemetry from sensor boards to the cloud, without losing a reading.

Packages of this distribution:

- ``edgewire`` -- what every service shares: the contract's constants, the
  sample type, configuration loading, logging, the process lifecycle, the CLI,
  the demo and the board simulator.
- ``edge`` -- the agent on the Raspberry Pi (MQTT in, durable buffer, gRPC out).
- ``cloud`` -- ingest, storage, the bus and the live feeds.
- ``firmware`` -- building and installing the board program.

The board program itself lives in the repository's ``device/`` folder: it is
MicroPython source for a board's filesystem, not a host package.
"""

__version__ = "0.1.0"
