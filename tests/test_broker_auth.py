"""Per-device MQTT credentials and ACLs, enforced by a real Mosquitto.

The broker runs on the config `render_broker_config` writes and the password
and ACL files `edgewire edge add-device` and `add-user` wrote; the clients are
paho (a board, the edge, a tool) and, for the hash format, `mosquitto_passwd`.
Mosquitto 2.0 with MQTT 3.1.1 gives no error for a denied publish (a normal
PUBACK) and grants every subscription, filtering what it delivers: so each
"never arrives" is shown by a later allowed message that does arrive, from
the same sender to the same receiver, in order.
"""

import ast
import base64
import getpass
import json
import os
import pwd
import queue
import signal
import stat
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import count
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from edge import broker_auth
from edge.buffer import BUFFER_FILE, Caps, SqliteBuffer
from edge.buffer.base import dead_letter
from edgewire.ca import init_ca
from edgewire.ca import issue as issue_certificate
from edgewire.errors import ConfigError
from edgewire.mosquitto import mosquitto_binary
from edgewire.procs import free_port, spawn, wait_for_port
from tests.helpers import Service, edge_service, eventually, run_edgewire
from tests.test_layering import IO_MODULES

ROOT = Path(__file__).resolve().parent.parent
BOARD_A, BOARD_B = "board-a", "board-b"
WAIT_S = 10.0
_client_ids = count()


# -- a private broker with edgewire's auth -----------------------------------


@dataclass
class Broker:
    """A Mosquitto on the auth config, and the passwords the CLI issued."""

    data_dir: Path
    port: int
    tls_port: int
    cafile: Path
    process: subprocess.Popen[bytes]
    passwords: dict[str, str] = field(default_factory=dict)

    def reload(self) -> None:
        """What `systemctl reload mosquitto` does."""
        self.process.send_signal(signal.SIGHUP)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


def edgewire_auth(*args: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    # The files go to the account the test broker runs as (its `user` line).
    user = ["--broker-user", getpass.getuser()]
    return run_edgewire("edge", *args, "--data-dir", str(data_dir), *user)


def issue(*args: str, data_dir: Path) -> str:
    """Run add-device/add-user with --json; the password it issued."""
    result = edgewire_auth(*args, "--json", data_dir=data_dir)
    assert result.returncode == 0, result.stderr
    password: str = json.loads(result.stdout)["password"]
    return password


def broker_certificate(directory: Path) -> tuple[Path, Path, Path]:
    """(CA certificate, broker certificate, key) for 127.0.0.1, from `edgewire ca`."""
    ca = init_ca(directory / "ca")
    hosts = ["127.0.0.1", "localhost"]
    issued = issue_certificate(directory / "ca", "broker", "server", hosts=hosts)
    return ca.cert, issued.cert, issued.key


def start_broker(workdir: Path, data_dir: Path) -> Broker:
    cafile, cert, key = broker_certificate(workdir)
    port, tls_port = free_port(), free_port()
    config = broker_auth.render_broker_config(
        password_file=str(data_dir / "passwd"),
        acl_file=str(data_dir / "acl"),
        port=port,
        persistence_location=str(workdir),
        tls=broker_auth.TlsListener(
            port=tls_port, cafile=str(cafile), certfile=str(cert), keyfile=str(key)
        ),
    )
    # Run as root here: Mosquitto drops to this user, as PrivateMosquitto's does.
    config += f"user {getpass.getuser()}\nlog_dest stderr\n"
    (workdir / "mosquitto.conf").write_text(config)
    process = spawn([mosquitto_binary(), "-c", str(workdir / "mosquitto.conf")], workdir / "log")
    wait_for_port(port, 10, process)
    wait_for_port(tls_port, 10, process)
    return Broker(data_dir, port, tls_port, cafile, process)


def running_broker(workdir: Path) -> Iterator[Broker]:
    """A broker with two boards, the edge and a tool; stopped after."""
    data_dir = workdir / "data"
    passwords = {
        BOARD_A: issue("add-device", BOARD_A, data_dir=data_dir),
        BOARD_B: issue("add-device", BOARD_B, data_dir=data_dir),
        "edge": issue("add-user", "edge", "--role", "edge", data_dir=data_dir),
        "laptop": issue("add-user", "laptop", "--role", "tool", data_dir=data_dir),
    }
    started = start_broker(workdir, data_dir)
    started.passwords = passwords
    yield started
    started.stop()


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    yield from running_broker(tmp_path_factory.mktemp("broker_auth"))


# -- MQTT clients --------------------------------------------------------------


class Peer:
    """A paho client (MQTT 3.1.1, like the boards and the edge) logged in as
    one account, keeping what it receives in order."""

    def __init__(self, port: int, username: str | None, password: str | None) -> None:
        self.port = port
        self.messages: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self.disconnected = queue.Queue[str]()
        self._connack: queue.Queue[Any] = queue.Queue()
        self._suback: queue.Queue[list[Any]] = queue.Queue()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"{username or 'anonymous'}-{next(_client_ids)}",
            protocol=MQTTProtocolVersion.MQTTv311,
        )
        if username is not None:
            self.client.username_pw_set(username, password)
        self.client.on_connect = lambda _c, _u, _f, reason, _p: self._connack.put(reason)
        self.client.on_subscribe = lambda _c, _u, _m, reasons, _p: self._suback.put(reasons)
        self.client.on_message = lambda _c, _u, m: self.messages.put((m.topic, bytes(m.payload)))
        self.client.on_disconnect = lambda _c, _u, _f, reason, _p: self.disconnected.put(
            str(reason)
        )

    def connect(self) -> str:
        """The broker's answer: "Success", or why it refused."""
        self.client.connect("127.0.0.1", self.port)
        self.client.loop_start()
        reason = self._connack.get(timeout=WAIT_S)
        if reason.is_failure:
            self.close()  # or paho would keep retrying
        return str(reason)

    def subscribe(self, *topics: str) -> None:
        self.client.subscribe([(topic, 1) for topic in topics])
        reasons = self._suback.get(timeout=WAIT_S)
        assert not any(r.is_failure for r in reasons), reasons

    def publish(self, topic: str, payload: str, retain: bool = False) -> None:
        """QoS 1: returns once the broker acknowledged it (denied or not)."""
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        info.wait_for_publish(WAIT_S)
        assert info.is_published()

    def receive_until(self, topic: str, payload: str) -> list[tuple[str, str]]:
        """Everything received up to and with (`topic`, `payload`)."""
        seen: list[tuple[str, str]] = []
        deadline = time.monotonic() + WAIT_S
        while (topic, payload) not in seen:
            left = deadline - time.monotonic()
            try:
                got_topic, got = self.messages.get(timeout=max(left, 0.001))
            except queue.Empty:
                raise AssertionError(f"{(topic, payload)} never came; got {seen}") from None
            seen.append((got_topic, got.decode()))
        return seen

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def connected_peers(broker: Broker) -> Iterator[dict[str, Peer]]:
    """A connected client for each account of the broker, closed after."""
    connected = {
        name: Peer(broker.port, name, password) for name, password in broker.passwords.items()
    }
    for name, peer in connected.items():
        assert peer.connect() == "Success", name
    yield connected
    for peer in connected.values():
        peer.close()


@pytest.fixture
def peers(broker: Broker) -> Iterator[dict[str, Peer]]:
    yield from connected_peers(broker)


def answer_to(
    port: int, username: str | None, password: str | None, tls_ca: Path | None = None
) -> str:
    """How the broker answers a login: "Success", or why it refused."""
    peer = Peer(port, username, password)
    if tls_ca is not None:
        peer.client.tls_set(ca_certs=str(tls_ca))
    reason = peer.connect()
    peer.close()
    return reason


# -- the hash ------------------------------------------------------------------


def mosquitto_passwd_hash(tmp_path: Path, password: str) -> str:
    """The hash `mosquitto_passwd -b` writes for `password`."""
    path = tmp_path / "passwd"
    subprocess.run(
        ["mosquitto_passwd", "-c", "-b", str(path), "probe", password],
        check=True, capture_output=True, timeout=10,
    )  # fmt: skip
    return path.read_text().strip().partition(":")[2]


def test_our_hash_is_the_one_mosquitto_passwd_writes(tmp_path: Path) -> None:
    theirs = mosquitto_passwd_hash(tmp_path, "correct horse")
    _, kind, iterations, salt, _ = theirs.split("$")
    assert (kind, iterations, len(base64.b64decode(salt))) == ("7", "101", 12)
    assert broker_auth.hash_password("correct horse", base64.b64decode(salt)) == theirs
    assert broker_auth.verify_password("correct horse", theirs)
    assert not broker_auth.verify_password("correct horsf", theirs)
    ours = broker_auth.hash_password("correct horse")
    assert ours != broker_auth.hash_password("correct horse"), "a fresh salt each time"
    assert len(base64.b64decode(ours.split("$")[4])) == 64


def test_the_broker_accepts_our_lines_and_mosquitto_passwds(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "acl").write_text(broker_auth.render_acl(broker_auth.Registry()))
    (data_dir / "passwd").write_text(
        f"ours:{broker_auth.hash_password('s3cret')}\n"
        f"theirs:{mosquitto_passwd_hash(tmp_path, 's3cret')}\n"
    )
    own = start_broker(tmp_path, data_dir)
    try:
        assert answer_to(own.port, "ours", "s3cret") == "Success"
        assert answer_to(own.port, "theirs", "s3cret") == "Success"
        assert answer_to(own.port, "ours", "s3cres") == "Not authorized"
    finally:
        own.stop()


# -- who may connect ---------------------------------------------------------


def test_a_wrong_password_an_unknown_user_and_anonymous_are_refused(broker: Broker) -> None:
    assert answer_to(broker.port, BOARD_A, broker.passwords[BOARD_A]) == "Success"
    assert answer_to(broker.port, BOARD_A, broker.passwords[BOARD_B]) == "Not authorized"
    assert answer_to(broker.port, "board-z", broker.passwords[BOARD_A]) == "Not authorized"
    assert answer_to(broker.port, None, None) == "Not authorized"


def test_the_tls_listener_checks_the_same_credentials(broker: Broker) -> None:
    port, ca = broker.tls_port, broker.cafile
    assert answer_to(port, BOARD_A, broker.passwords[BOARD_A], tls_ca=ca) == "Success"
    assert answer_to(port, BOARD_A, "guess", tls_ca=ca) == "Not authorized"
    assert answer_to(port, None, None, tls_ca=ca) == "Not authorized"


# -- what each may do --------------------------------------------------------


def test_a_board_cannot_publish_as_another(peers: dict[str, Peer]) -> None:
    edge, board_a = peers["edge"], peers[BOARD_A]
    edge.subscribe("edgewire/+/telemetry")
    board_a.publish(f"edgewire/{BOARD_B}/telemetry", "forged")  # acknowledged, and dropped
    board_a.publish(f"edgewire/{BOARD_A}/telemetry", "own")
    seen = edge.receive_until(f"edgewire/{BOARD_A}/telemetry", "own")
    assert seen == [(f"edgewire/{BOARD_A}/telemetry", "own")]


def test_a_board_cannot_read_another_boards_commands(peers: dict[str, Peer]) -> None:
    edge, board_a, board_b = peers["edge"], peers[BOARD_A], peers[BOARD_B]
    board_a.subscribe("edgewire/#", f"edgewire/{BOARD_B}/cmd")  # granted, then filtered
    board_b.subscribe(f"edgewire/{BOARD_B}/cmd")
    edge.publish(f"edgewire/{BOARD_B}/cmd", "for b")
    edge.publish(f"edgewire/{BOARD_A}/cmd", "for a")
    assert board_b.receive_until(f"edgewire/{BOARD_B}/cmd", "for b")
    seen = board_a.receive_until(f"edgewire/{BOARD_A}/cmd", "for a")
    assert seen == [(f"edgewire/{BOARD_A}/cmd", "for a")]


def test_the_edge_commands_boards_and_hears_them(peers: dict[str, Peer]) -> None:
    edge, board_a = peers["edge"], peers[BOARD_A]
    board_a.subscribe(f"edgewire/{BOARD_A}/#")
    edge.subscribe("edgewire/+/status", "edgewire/+/cmd/ack", "edgewire/+/ota/ack")
    edge.publish(f"edgewire/{BOARD_A}/ota", "not the edge's to send")
    edge.publish(f"edgewire/{BOARD_A}/cmd", '{"id": "c1"}')
    edge.publish(f"edgewire/{BOARD_A}/stored", '{"boot": 1, "seq": 2}')
    assert board_a.receive_until(f"edgewire/{BOARD_A}/stored", '{"boot": 1, "seq": 2}') == [
        (f"edgewire/{BOARD_A}/cmd", '{"id": "c1"}'),
        (f"edgewire/{BOARD_A}/stored", '{"boot": 1, "seq": 2}'),
    ]
    board_a.publish(f"edgewire/{BOARD_A}/ota/ack", "not the edge's to read")
    board_a.publish(f"edgewire/{BOARD_A}/status", "online", retain=True)
    board_a.publish(f"edgewire/{BOARD_A}/cmd/ack", '{"id": "c1", "ok": true}')
    assert edge.receive_until(f"edgewire/{BOARD_A}/cmd/ack", '{"id": "c1", "ok": true}') == [
        (f"edgewire/{BOARD_A}/status", "online"),
        (f"edgewire/{BOARD_A}/cmd/ack", '{"id": "c1", "ok": true}'),
    ]


def test_a_tool_updates_a_board_and_reads_nothing_else(peers: dict[str, Peer]) -> None:
    tool, board_a = peers["laptop"], peers[BOARD_A]
    board_a.subscribe(f"edgewire/{BOARD_A}/cmd", f"edgewire/{BOARD_A}/ota")
    tool.subscribe("edgewire/#")
    tool.publish(f"edgewire/{BOARD_A}/cmd", '{"id": "ota-1", "update": true}')
    tool.publish(f"edgewire/{BOARD_A}/ota", '{"ota": "start"}')
    assert board_a.receive_until(f"edgewire/{BOARD_A}/ota", '{"ota": "start"}') == [
        (f"edgewire/{BOARD_A}/cmd", '{"id": "ota-1", "update": true}'),
        (f"edgewire/{BOARD_A}/ota", '{"ota": "start"}'),
    ]
    board_a.publish(f"edgewire/{BOARD_A}/telemetry", "not the tool's to read")
    board_a.publish(f"edgewire/{BOARD_A}/cmd/ack", '{"id": "ota-1", "ok": true}')
    board_a.publish(f"edgewire/{BOARD_A}/ota/ack", '{"ota": "ready"}')
    assert tool.receive_until(f"edgewire/{BOARD_A}/ota/ack", '{"ota": "ready"}') == [
        (f"edgewire/{BOARD_A}/cmd/ack", '{"id": "ota-1", "ok": true}'),
        (f"edgewire/{BOARD_A}/ota/ack", '{"ota": "ready"}'),
    ]


def test_dead_letters_replay_as_the_edge_and_are_kept_when_refused(
    broker: Broker, peers: dict[str, Peer], tmp_path: Path
) -> None:
    """MQTT 3.1.1 acknowledges a publish the ACL denied as if it went; the
    replay asks in MQTT 5, whose answer says so, and keeps the letter."""
    data_dir = tmp_path / "edge"
    topic = f"edgewire/{BOARD_A}/telemetry"
    side = SqliteBuffer(data_dir / BUFFER_FILE, Caps(1 << 40, 1 << 40, 1 << 40))
    side.append([], [dead_letter(time.time(), topic, "invalid", "old rule", b'{"replayed": 1}')])
    side.close()

    def replay(user: str) -> subprocess.CompletedProcess[str]:
        url = f"mqtt://{user}@127.0.0.1:{broker.port}"
        password_file = tmp_path / f"{user}.password"
        password_file.write_text(broker.passwords[user] + "\n")
        return run_edgewire(
            "edge", "dead-letters", "--replay", "--data-dir", str(data_dir),
            "--mqtt", url, "--mqtt-password-file", str(password_file),
        )  # fmt: skip

    as_tool = replay("laptop")
    assert as_tool.returncode == 1
    assert f"may not publish on {topic} (replay as the edge's user)" in as_tool.stderr
    assert _letters(data_dir) == 1, "kept"
    peers["edge"].close()  # the edge's session is clean: nothing subscribes now
    nobody = replay("edge")
    assert nobody.returncode == 1
    assert f"nothing subscribes to {topic} (is the edge running?)" in nobody.stderr
    assert _letters(data_dir) == 1, "kept"
    listener = Peer(broker.port, "edge", broker.passwords["edge"])
    assert listener.connect() == "Success"
    listener.subscribe(topic)
    as_edge = replay("edge")
    assert as_edge.returncode == 0, as_edge.stderr
    assert as_edge.stdout.strip() == "replayed 1 dead letter"
    assert listener.receive_until(topic, '{"replayed": 1}')
    assert _letters(data_dir) == 0
    listener.close()


def _letters(data_dir: Path) -> int:
    listed = run_edgewire("edge", "dead-letters", "--data-dir", str(data_dir), "--json")
    assert listed.returncode == 0, listed.stderr
    return len(listed.stdout.splitlines())


# -- changes while the broker runs -------------------------------------------


def test_add_rotate_and_remove_take_effect_at_a_reload(broker: Broker) -> None:
    """SIGHUP, no restart: a new board gets in, a rotated or removed
    credential is shut out, and its open connection is closed."""
    board = "board-c"
    password = issue("add-device", board, data_dir=broker.data_dir)
    assert answer_to(broker.port, board, password) == "Not authorized", "not before the reload"
    broker.reload()
    eventually(lambda: answer_to(broker.port, board, password) == "Success", WAIT_S)

    online = Peer(broker.port, board, password)
    assert online.connect() == "Success"
    rotated = issue("add-device", board, "--rotate", data_dir=broker.data_dir)
    broker.reload()
    assert online.disconnected.get(timeout=WAIT_S), "the old password's connection is closed"
    online.close()
    assert answer_to(broker.port, board, password) == "Not authorized"
    assert answer_to(broker.port, board, rotated) == "Success"

    online = Peer(broker.port, board, rotated)
    assert online.connect() == "Success"
    removed = edgewire_auth("remove-device", board, data_dir=broker.data_dir)
    assert removed.returncode == 0, removed.stderr
    broker.reload()
    assert online.disconnected.get(timeout=WAIT_S), "a removed board's connection is closed"
    online.close()
    assert answer_to(broker.port, board, rotated) == "Not authorized"
    assert answer_to(broker.port, BOARD_A, broker.passwords[BOARD_A]) == "Success"


# -- the real edge, with its own credential ----------------------------------


def test_the_edge_agent_stores_a_boards_reading_with_its_credential(
    broker: Broker, cloud: Service, tmp_path: Path
) -> None:
    secret = broker.passwords["edge"]
    url = f"mqtt://edge:{secret}@127.0.0.1:{broker.port}"
    edge = edge_service(tmp_path, url, cloud.grpc_port).start()
    board = Peer(broker.port, BOARD_A, broker.passwords[BOARD_A])
    try:
        eventually(lambda: edge.get("/healthz")["mqtt"] == "connected", WAIT_S)
        assert board.connect() == "Success"
        board.subscribe(f"edgewire/{BOARD_A}/stored")
        # seq 0: the first of a boot, so the edge can tell the board it is stored.
        sample = {"seq": 0, "boot": 9, "ts": time.time(), "m": {"temp_c": 21.5}}
        board.publish(f"edgewire/{BOARD_A}/telemetry", json.dumps(sample))

        def stored_in_the_cloud() -> list[Any]:
            readings = cloud.get("/api/readings", device=BOARD_A)
            return [(r["boot"], r["seq"], r["metric"], r["value"]) for r in readings]

        eventually(lambda: stored_in_the_cloud() == [(9, 0, "temp_c", 21.5)], WAIT_S)
        board.receive_until(f"edgewire/{BOARD_A}/stored", '{"boot":9,"seq":0}')
    finally:
        board.close()
        assert edge.stop() == 0
    assert secret not in edge.log()


def test_the_edge_over_mqtts_with_its_password_in_a_file(
    broker: Broker, cloud: Service, tmp_path: Path
) -> None:
    # As systemd's LoadCredential= hands it over: a file, not the URL.
    secret_file = tmp_path / "mqtt-password"
    secret_file.write_text(broker.passwords["edge"] + "\n")
    secret_file.chmod(0o600)
    url = f"mqtts://edge@127.0.0.1:{broker.tls_port}"
    extra = ["--mqtt-ca", str(broker.cafile), "--mqtt-password-file", str(secret_file)]
    edge = edge_service(tmp_path, url, cloud.grpc_port, extra=extra).start()
    board = Peer(broker.port, BOARD_B, broker.passwords[BOARD_B])
    try:
        eventually(lambda: edge.get("/healthz")["mqtt"] == "connected", WAIT_S)
        assert board.connect() == "Success"
        sample = {"seq": 0, "boot": 4, "ts": time.time(), "m": {"rh": 40.0}}
        board.publish(f"edgewire/{BOARD_B}/telemetry", json.dumps(sample))
        eventually(
            lambda: (
                [(r["boot"], r["value"]) for r in cloud.get("/api/readings", device=BOARD_B)]
                == [(4, 40.0)]
            ),
            WAIT_S,
        )
    finally:
        board.close()
        assert edge.stop() == 0
    assert broker.passwords["edge"] not in edge.log()


def test_the_edge_refuses_a_broker_certificate_of_another_ca(
    broker: Broker, cloud: Service, tmp_path: Path
) -> None:
    stranger = init_ca(tmp_path / "stranger")
    password = broker.passwords["edge"]
    url = f"mqtts://edge:{password}@127.0.0.1:{broker.tls_port}"
    extra = ["--mqtt-ca", str(stranger.cert)]
    edge = edge_service(tmp_path, url, cloud.grpc_port, extra=extra).start()
    try:
        eventually(lambda: "certificate verify failed" in edge.log(), WAIT_S, show=edge.log)
        assert edge.get("/healthz")["mqtt"] != "connected"
    finally:
        assert edge.stop() == 0
    assert password not in edge.log()
    # And an mqtt_ca without mqtts:// is a setting error, named.
    bad = run_edgewire("edge", "--mqtt", "mqtt://127.0.0.1:1", "--mqtt-ca", str(stranger.cert))
    assert bad.returncode == 2
    assert "needs an mqtts:// broker URL" in bad.stderr


# -- the command line ----------------------------------------------------------


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_add_device_shows_the_password_once_and_keeps_its_hash(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    result = run_edgewire("edge", "add-device", "kitchen", "--data-dir", str(data_dir))
    assert result.returncode == 0, result.stderr
    password = result.stdout.strip()
    assert result.stdout == password + "\n"
    assert len(password) == 24  # secrets.token_urlsafe(18)
    assert password not in result.stderr
    assert "systemctl reload mosquitto" in result.stderr
    files = [data_dir / n for n in ("devices.json", "passwd", "acl")]
    for path in files:
        assert mode_of(path) == 0o600, path
        assert password not in path.read_text()
    registry = broker_auth.decode_registry((data_dir / "devices.json").read_bytes(), "devices")
    assert broker_auth.verify_password(password, registry.devices["kitchen"].password_hash)
    if os.geteuid() == 0 and _account_exists("mosquitto"):
        # Mosquitto reads them after dropping root, as its `user`.
        assert {pwd.getpwuid(p.stat().st_uid).pw_name for p in files[1:]} == {"mosquitto"}


def _account_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def test_password_out_writes_a_private_file(tmp_path: Path) -> None:
    out = tmp_path / "kitchen.pw"
    result = edgewire_auth(
        "add-device", "kitchen", "--password-out", str(out), data_dir=tmp_path / "data"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(out)
    assert mode_of(out) == 0o600
    registry = broker_auth.decode_registry((tmp_path / "data/devices.json").read_bytes(), "x")
    assert broker_auth.verify_password(
        out.read_text().strip(), registry.devices["kitchen"].password_hash
    )


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["add-device", "Kitchen"], "'Kitchen' is not valid"),
        (["add-device", "a/b"], "'a/b' is not valid"),
        (["remove-device", "nowhere"], "no device 'nowhere'"),
        (["add-user", "x:y", "--role", "edge"], "'x:y' is not valid"),
        (["add-user", "edge", "--role", "root"], "--role"),
        (["add-device", "edge", "--rotate"], "does not exist"),
        (["add-device", "k", "--json", "--password-out", "/tmp/x"], "alternatives"),
    ],
)
def test_bad_input_exits_2_with_one_line(tmp_path: Path, args: list[str], fragment: str) -> None:
    result = edgewire_auth(*args, data_dir=tmp_path / "data")
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert fragment in lines[0]


def test_names_are_taken_once(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    issue("add-user", "edge", "--role", "edge", data_dir=data_dir)
    issue("add-device", "kitchen", data_dir=data_dir)
    for args, fragment in [
        (["add-device", "kitchen"], "exists: --rotate"),
        (["add-device", "edge"], "already a user (role edge)"),
        (["add-user", "kitchen", "--role", "tool"], "already a device"),
        (["add-user", "edge", "--role", "tool", "--rotate"], "has role edge"),
    ]:
        result = edgewire_auth(*args, data_dir=data_dir)
        assert (result.returncode, fragment in result.stderr) == (2, True), result.stderr


def test_a_tampered_registry_is_refused_not_rendered() -> None:
    good = broker_auth.hash_password("x")
    injected = json.dumps({"devices": {"a": {"password_hash": good + "\nuser evil", "created": 0}}})
    with pytest.raises(ConfigError, match="not a \\$7\\$ value"):
        broker_auth.decode_registry(injected.encode(), "devices.json")


def test_broker_config_names_the_data_dirs_files(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    result = run_edgewire("edge", "broker-config", "--data-dir", str(data_dir), "--port", "1884")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    for line in [
        "per_listener_settings false",
        "allow_anonymous false",
        f"password_file {data_dir}/passwd",
        f"acl_file {data_dir}/acl",
        "persistence true",
        "listener 1884 127.0.0.1",
    ]:
        assert line in lines
    assert not any(line.startswith("persistence_location") for line in lines), "Debian sets it"


def test_broker_config_out_writes_the_three_files_and_add_device_keeps_them_current(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data"
    out = tmp_path / "conf.d"
    assert issue("add-user", "edge", "--role", "edge", data_dir=data_dir)
    result = edgewire_auth("broker-config", "--port", "1884", "--out", str(out), data_dir=data_dir)
    assert result.returncode == 0, result.stderr
    conf = (out / "mosquitto.conf").read_text().splitlines()
    assert f"password_file {out}/passwd" in conf
    assert f"acl_file {out}/acl" in conf
    assert "allow_anonymous false" in conf
    assert mode_of(out / "mosquitto.conf") == 0o644
    assert mode_of(out / "passwd") == mode_of(out / "acl") == 0o600
    assert (out / "passwd").read_text() == (data_dir / "passwd").read_text()
    assert "kitchen" not in (out / "acl").read_text()
    issue("add-device", "kitchen", data_dir=data_dir)
    assert "edgewire/kitchen/telemetry" in (out / "acl").read_text()
    assert (out / "passwd").read_text().count("kitchen:$7$") == 1


@pytest.mark.parametrize(
    ("command", "words"),
    [
        ("add-device", ["--data-dir", "--password-out", "--rotate", "--json", "systemctl reload"]),
        ("remove-device", ["--data-dir", "systemctl reload"]),
        ("add-user", ["--role", "edge", "tool", "--password-out", "--rotate"]),
        ("broker-config", ["--port", "--bind", "--tls-port", "--cafile", "--out", "conf.d"]),
    ],
)
def test_every_auth_command_has_help(command: str, words: list[str]) -> None:
    result = run_edgewire("edge", command, "--help")
    assert result.returncode == 0, result.stderr
    for word in words:
        assert word in result.stdout


def test_the_core_does_no_io() -> None:
    tree = ast.parse((ROOT / "edge" / "broker_auth.py").read_text())
    imported = {
        name.split(".")[0]
        for node in ast.walk(tree)
        for name in (
            [alias.name for alias in node.names]
            if isinstance(node, ast.Import)
            else [node.module or ""]
            if isinstance(node, ast.ImportFrom)
            else []
        )
    }
    assert not imported & IO_MODULES


def test_flash_provision_gives_a_board_its_own_login(broker: Broker, tmp_path: Path) -> None:
    from edgewire.sim.micropython import MicroPythonBoard
    from edgewire.sim.serial_board import SerialBoard

    edge = Peer(broker.port, "edge", broker.passwords["edge"])
    assert edge.connect() == "Success"
    edge.subscribe("edgewire/+/telemetry")
    with SerialBoard(tmp_path / "board") as board:
        result = run_edgewire(
            "flash", "--port", board.start(), "--device-id", "prov-1",
            "--broker", f"mqtt://127.0.0.1:{broker.port}", "--wifi-ssid", "home",
            "--sensor", "synthetic", "--interval-s", "0.2",
            "--provision", "--edge-data-dir", str(broker.data_dir),
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        board.unplug()
        config = json.loads((board.folder / "config.json").read_text())
        assert config["broker"]["user"] == "prov-1"
        password = config["broker"]["password"]
        assert password
        assert password not in result.stdout + result.stderr, "never shown"
        assert "systemctl reload mosquitto" in result.stdout
        broker.reload()
        runner = MicroPythonBoard(board.folder, None, "64K")
        runner.start()
        try:
            topic, payload = edge.messages.get(timeout=30)
        finally:
            runner.stop()
            edge.close()
    assert topic == "edgewire/prov-1/telemetry", runner.console()
    assert json.loads(payload)
