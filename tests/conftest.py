"""Fixtures: a private Mosquitto per test, real edgewire processes."""

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgewire.mosquitto import PrivateMosquitto
from edgewire.sim.micropython import MicroPythonBoard
from tests.helpers import Service, cloud_service, edge_service


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[PrivateMosquitto]:
    broker = PrivateMosquitto(tmp_path / "mosquitto")
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture
def boards() -> Iterator[list[MicroPythonBoard]]:
    """Simulated boards a test started: stopped (plug pulled) at its end."""
    started: list[MicroPythonBoard] = []
    yield started
    for board in started:
        board.stop()


@pytest.fixture
def stepping() -> Iterator[list[MicroPythonBoard]]:
    """Boards kept running (restarted after each reset) on a thread."""
    boards: list[MicroPythonBoard] = []
    stop = threading.Event()

    def step() -> None:
        while not stop.wait(0.05):
            for board in list(boards):
                board.step()

    thread = threading.Thread(target=step, daemon=True)
    thread.start()
    yield boards
    stop.set()
    thread.join()
    for board in boards:
        board.stop()


@pytest.fixture
def cloud(tmp_path: Path) -> Iterator[Service]:
    service = cloud_service(tmp_path).start()
    yield service
    assert service.stop() == 0, "SIGTERM stops the cloud cleanly"


@pytest.fixture
def edge(tmp_path: Path, mosquitto: PrivateMosquitto, cloud: Service) -> Iterator[Service]:
    service = edge_service(tmp_path, mosquitto.url, cloud.grpc_port).start()
    yield service
    assert service.stop() == 0, "SIGTERM stops the edge cleanly"
