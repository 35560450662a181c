"""Limits at the edge's broker (issue 8), on a real Mosquitto configured by
`edgewire edge broker-config`: the packet size, and (with nftables, in a
network namespace of its own) connections per client address.

Mosquitto 2.0.11 (Debian 12) miscounts `max_connections`: each connection
closed before its CONNECT raises the allowance by one, so the nftables limit
is the one to rely on.

Mosquitto 2.0 has no limit on subscriptions per client, and grants a board's
subscription to another board's topics (the ACL stops delivery, not the
subscription): docs/security.md says so."""

import getpass
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge import broker_auth
from edgewire import contract
from edgewire.mosquitto import mosquitto_binary
from edgewire.procs import free_port
from tests.helpers import eventually, run_edgewire
from tests.test_broker_auth import (
    BOARD_A,
    BOARD_B,
    WAIT_S,
    Broker,
    Peer,
    connected_peers,
    issue,
    running_broker,
)


@pytest.fixture(scope="module")
def auth_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    yield from running_broker(tmp_path_factory.mktemp("broker_limits"))


@pytest.fixture
def peers(auth_broker: Broker) -> Iterator[dict[str, Peer]]:
    yield from connected_peers(auth_broker)


def test_a_packet_over_the_limit_disconnects_its_sender_and_reaches_no_one(
    auth_broker: Broker, peers: dict[str, Peer]
) -> None:
    board, edge = peers[BOARD_A], peers["edge"]
    edge.subscribe(f"edgewire/{BOARD_A}/telemetry")
    topic = f"edgewire/{BOARD_A}/telemetry"
    largest = contract.MAX_PAYLOAD_BYTES  # the contract's largest payload passes
    board.publish(topic, "x" * largest)
    assert edge.receive_until(topic, "x" * largest)[-1][1] == "x" * largest
    board.client.publish(topic, "y" * (broker_auth.MAX_PACKET_BYTES + 1), qos=1)
    assert board.disconnected.get(timeout=WAIT_S), "the broker hangs up on it"
    board.close()
    again = Peer(auth_broker.port, BOARD_A, auth_broker.passwords[BOARD_A])
    assert again.connect() == "Success"
    again.publish(topic, "after")
    seen = edge.receive_until(topic, "after")
    assert not any(payload.startswith("y") for _, payload in seen), "never forwarded"
    again.close()


# Run inside the namespace: open `count` connections to the port and print
# how each went ("ok", or the error's name).
_CONNECT = """
import socket, sys, time
port, count = int(sys.argv[1]), int(sys.argv[2])
held = []
for _ in range(count):
    try:
        held.append(socket.create_connection(("127.0.0.1", port), timeout=5))
        print("ok", flush=True)
    except OSError as exc:
        print(type(exc).__name__, flush=True)
"""


def _in_namespace(namespace: str, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ip", "netns", "exec", namespace, *argv],
        check=False,
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.fixture
def namespace() -> Iterator[str]:
    """A network namespace of its own: the ruleset and the loopback the test
    uses are no one else's."""
    if os.geteuid() != 0 or shutil.which("nft") is None:
        pytest.skip("needs root and nft (./scripts/setup --dev installs nftables)")
    name = f"ew-limits-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=False)


def test_connections_per_address_past_the_nft_limit_are_reset_and_counted(
    tmp_path: Path, namespace: str
) -> None:
    data_dir, out = tmp_path / "data", tmp_path / "conf"
    issue("add-device", BOARD_B, data_dir=data_dir)
    port = free_port()
    result = run_edgewire(
        "edge", "broker-config", "--data-dir", str(data_dir), "--port", str(port),
        "--out", str(out), "--connections-per-ip", "3", "--persistence-location", str(tmp_path),
        "--broker-user", getpass.getuser(),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    ruleset = out / "edgewire-mqtt.nft"
    assert f"nft -f {ruleset}" in result.stdout
    loaded = _in_namespace(namespace, "nft", "-f", str(ruleset))
    assert loaded.returncode == 0, loaded.stderr
    again = _in_namespace(namespace, "nft", "-f", str(ruleset))
    assert again.returncode == 0, "loading it twice replaces it: " + again.stderr
    conf = (out / "mosquitto.conf").read_text() + f"user {getpass.getuser()}\nlog_dest stderr\n"
    (tmp_path / "broker.conf").write_text(conf)
    mosquitto = subprocess.Popen(
        ["ip", "netns", "exec", namespace, mosquitto_binary(), "-c", str(tmp_path / "broker.conf")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        probe = _in_namespace(namespace, sys.executable, "-c", _CONNECT, str(port), "1")
        eventually(
            lambda: (
                _in_namespace(
                    namespace, sys.executable, "-c", _CONNECT, str(port), "1"
                ).stdout.split()
                == ["ok"]
            ),
            show=lambda: probe.stdout + probe.stderr,
        )
        tried = _in_namespace(namespace, sys.executable, "-c", _CONNECT, str(port), "5")
        assert tried.stdout.split() == ["ok"] * 3 + ["ConnectionRefusedError"] * 2, tried.stderr
        counters = _in_namespace(namespace, "nft", "list", "table", "inet", "edgewire_mqtt")
        assert "counter packets 2 " in counters.stdout, counters.stdout
    finally:
        mosquitto.terminate()
        mosquitto.wait(10)
