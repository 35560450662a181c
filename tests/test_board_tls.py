"""Boards on an mqtts:// broker (issue 8): the real Mosquitto on the config
`edgewire edge broker-config --tls` prints, with a certificate from
`edgewire ca`; boards on the MicroPython unix port (and CPython's simulated
board) that `edgewire flash` gave the project CA as ca.der; the real edge
and cloud behind the broker, the edge over mqtts:// too.

A board checks the broker's certificate against its CA, for the host name
it dials and, by its own clock, for its dates. A broker it cannot check gets
nothing from it (the board says why on its console and keeps retrying),
while the edge still receives everything from the boards that could. Nothing
here fakes TLS: every verdict comes from the board's TLS library in a real
handshake (mbedTLS on MicroPython, OpenSSL under CPython, where a simulated
ESP32's clock is held against the certificate's dates as mbedTLS would).
"""

import getpass
import json
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from edgewire.auth_commands import provision_device
from edgewire.ca import init_ca
from edgewire.ca import issue as issue_certificate
from edgewire.mosquitto import mosquitto_binary
from edgewire.procs import edgewire_argv, free_port, spawn, wait_for_port
from edgewire.sim.micropython import MicroPythonBoard
from edgewire.sim.serial_board import SerialBoard
from edgewire.urls import parse_endpoint
from firmware.board_config import BoardSettings, render_config
from firmware.build import build
from firmware.update import UpdateOptions, update
from tests.helpers import Service, cloud_service, edge_service, eventually, run_edgewire
from tests.test_broker_auth import Peer
from tests.test_update import marked_sensors

# Over TLS the program needs 38 KB of heap on this 64-bit port with a 2 KB
# ring (plain MQTT: 32 KB; bench/board.py measures both), mostly for the TLS
# context (one block of about 3 KB) and a TLS socket at each connect (which
# needs 0.5 KB in one piece). Boards here get 2 KB more than that; the boards
# whose TLS can check a certificate (ESP32, Pico W) have 110 KB and more.
TLS_HEAP = "40K"
RUNTIMES = ["micropython", "cpython"]
USER = getpass.getuser()
WAIT_S = 30.0
# What each board's TLS says about a broker it cannot check (its console).
REFUSALS = {
    "micropython": {
        "stranger": "The certificate is not correctly signed by the trusted CA",
        "misnamed": "The certificate Common Name (CN) does not match with the expected CN",
    },
    "cpython": {
        "stranger": "certificate verify failed",
        "misnamed": "IP address mismatch, certificate is not valid for '127.0.0.1'",
    },
}


def der(pem_file: Path) -> bytes:
    return x509.load_pem_x509_certificate(pem_file.read_bytes()).public_bytes(Encoding.DER)


# -- the site: CA, brokers, edge, cloud ----------------------------------------


@dataclass
class Broker:
    process: subprocess.Popen[bytes]
    port: int  # plain
    tls_port: int


@dataclass
class Site:
    workdir: Path
    ca_cert: Path  # the project CA, where `edgewire ca init` (run in workdir) put it
    stranger_cert: Path  # another CA's
    broker_cert: Path  # the broker's own: not a CA
    data_dir: Path  # the edge's: board logins, passwd, acl
    broker: Broker  # certificate for 127.0.0.1 and localhost
    misnamed: Broker  # the same logins; a certificate for elsewhere.example only
    passwords: dict[str, str]
    cloud: Service
    edge: Service
    compiled: Path

    def login(self, device: str) -> str:
        """A new board login, in force once the brokers reload (a board
        refused before that retries)."""
        password = provision_device(self.data_dir, device, USER)
        for broker in (self.broker, self.misnamed):
            broker.process.send_signal(signal.SIGHUP)  # `systemctl reload mosquitto`
        return password

    def readings(self, device: str) -> list[dict[str, object]]:
        found: list[dict[str, object]] = self.cloud.get(
            "/api/readings", device=device, limit=10_000
        )
        return found


def add_user(name: str, role: str, data_dir: Path) -> str:
    result = run_edgewire(
        "edge", "add-user", name, "--role", role, "--json",
        "--data-dir", str(data_dir), "--broker-user", USER,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    password: str = json.loads(result.stdout)["password"]
    return password


def tls_broker(workdir: Path, data_dir: Path, ca: Path, cert: Path, key: Path) -> Broker:
    """Mosquitto on the config `edgewire edge broker-config --tls` prints."""
    workdir.mkdir()
    port, tls_port = free_port(), free_port()
    result = run_edgewire(
        "edge", "broker-config", "--data-dir", str(data_dir), "--broker-user", USER,
        "--port", str(port), "--tls", "--tls-port", str(tls_port), "--cafile", str(ca),
        "--certfile", str(cert), "--keyfile", str(key),
        "--persistence-location", str(workdir),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert f"listener {tls_port}" in result.stdout
    # Run as root here, Mosquitto drops to this user (as in test_broker_auth).
    config = workdir / "mosquitto.conf"
    config.write_text(result.stdout + f"user {USER}\nlog_dest stderr\n")
    process = spawn([mosquitto_binary(), "-c", str(config)], workdir / "log")
    wait_for_port(tls_port, 10, process)
    return Broker(process, port, tls_port)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    workdir = tmp_path_factory.mktemp("board_tls")
    ca = init_ca(workdir / "edgewire-ca")  # where `flash` looks by default
    stranger = init_ca(workdir / "stranger")
    hosts = ["127.0.0.1", "localhost"]
    own = issue_certificate(ca.folder, "broker", "server", hosts=hosts)
    elsewhere = issue_certificate(ca.folder, "misnamed", "server", hosts=["elsewhere.example"])
    data_dir = workdir / "data"
    passwords = {"edge": add_user("edge", "edge", data_dir)}
    passwords["laptop"] = add_user("laptop", "tool", data_dir)  # flash --update's
    broker = tls_broker(workdir / "broker", data_dir, ca.cert, own.cert, own.key)
    misnamed = tls_broker(workdir / "misnamed", data_dir, ca.cert, elsewhere.cert, elsewhere.key)
    compiled = workdir / "build"
    build(compiled)
    cloud = cloud_service(workdir).start()
    # The edge over mqtts://, its password from a file (tests/test_broker_auth.py).
    secret = workdir / "edge-password"
    secret.write_text(passwords["edge"])
    secret.chmod(0o600)
    edge = edge_service(
        workdir,
        f"mqtts://edge@127.0.0.1:{broker.tls_port}",
        cloud.grpc_port,
        extra=["--mqtt-ca", str(ca.cert), "--mqtt-password-file", str(secret)],
    ).start()
    built = Site(
        workdir, ca.cert, stranger.cert, own.cert, data_dir, broker, misnamed, passwords,
        cloud, edge, compiled,
    )  # fmt: skip
    try:
        eventually(lambda: edge.get("/healthz")["mqtt"] == "connected", WAIT_S, show=edge.log)
        yield built
    finally:
        assert edge.stop() == 0
        assert cloud.stop() == 0
        for one in (broker, misnamed):
            one.process.terminate()
            one.process.wait(10)


def tls_board(
    site: Site, runtime: str, device: str, ca: bytes | None, broker: Broker | None = None
) -> MicroPythonBoard:
    """A board with its own login and the config.json `edgewire flash`
    writes for an mqtts:// broker, holding `ca` as ca.der (None: no CA)."""
    password = site.login(device)
    port = (broker or site.broker).tls_port
    settings = BoardSettings(
        device_id=device,
        broker=f"mqtts://{device}:{quote(password, safe='')}@127.0.0.1:{port}",
        sensor="synthetic",
        interval_s=0.2,
        ring_max_samples=32,
        ring_max_bytes=2048,
    )
    folder = site.workdir / runtime / device
    folder.mkdir(parents=True)
    (folder / "config.json").write_bytes(render_config(settings, device))
    if ca is not None:
        (folder / "ca.der").write_bytes(ca)
    if runtime == "micropython":
        return MicroPythonBoard(folder, site.compiled, TLS_HEAP)
    return MicroPythonBoard(folder, None, None)


def tls_failures(board: MicroPythonBoard) -> list[str]:
    return [line for line in board.console().splitlines() if "link lost TLS:" in line]


# -- what a board accepts and refuses ------------------------------------------


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_board_checks_the_brokers_certificate_and_name(
    site: Site, runtime: str, boards: list[MicroPythonBoard]
) -> None:
    good, stranger, misnamed = (f"tls-{kind}-{runtime[:2]}" for kind in ("ok", "ca", "name"))
    # Someone on the broker that does not name 127.0.0.1 would hear the board
    # if it connected there: the edge's login reads every board's topics.
    listener = Peer(site.misnamed.port, "edge", site.passwords["edge"])
    assert listener.connect() == "Success"
    listener.subscribe(f"edgewire/{misnamed}/#")
    project_ca = der(site.ca_cert)
    checked = tls_board(site, runtime, good, project_ca)
    refusing = {
        "stranger": tls_board(site, runtime, stranger, der(site.stranger_cert)),
        "misnamed": tls_board(site, runtime, misnamed, project_ca, broker=site.misnamed),
    }
    boards += [checked, *refusing.values()]
    try:
        for board in boards:
            board.start()
        # The board that can check the broker: its readings reach the cloud.
        eventually(lambda: site.readings(good), WAIT_S, show=checked.console)
        for kind, board in refusing.items():

            def refused_twice(board: MicroPythonBoard = board) -> bool:
                return len(tls_failures(board)) >= 2

            eventually(refused_twice, WAIT_S, show=board.console)
            assert REFUSALS[runtime][kind] in tls_failures(board)[0], board.console()
            assert board.step(), "still running: it retries, it does not crash"
            assert "Traceback" not in board.console()
        assert site.readings(stranger) == []
        assert listener.messages.empty(), list(listener.messages.queue)
    finally:
        listener.close()
    assert "link lost" not in checked.console(), checked.console()
    assert "Traceback" not in checked.console(), checked.console()


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_board_for_mqtts_without_its_ca_does_not_start(
    site: Site, runtime: str, boards: list[MicroPythonBoard]
) -> None:
    board = tls_board(site, runtime, f"tls-noca-{runtime[:2]}", None)
    boards.append(board)
    board.start()
    eventually(lambda: not board.step(), WAIT_S, show=board.console)
    assert board.exit_codes[-1] == 1
    assert "mqtts: no CA certificate on the board (ca.der)" in board.console()
    assert "link lost" not in board.console(), "it never tried the broker unchecked"


# -- the board layer for real hardware -----------------------------------------


def mcu_board(site: Site, device: str, hardware: dict[str, object]) -> MicroPythonBoard:
    """A simulated ESP32 or ESP8266 (edgewire.sim.hardware: its clock counts
    from 2000 at power-on until NTP sets it) running device/ew_mcu.py."""
    board = tls_board(site, "cpython", device, der(site.ca_cert))
    config = json.loads((board.folder / "config.json").read_text())
    config["wifi"] = {"ssid": "workshop", "password": "hunter22"}
    (board.folder / "config.json").write_text(json.dumps(config))
    hardware = {"wifi": config["wifi"], **hardware}
    (board.folder / "hardware.json").write_text(json.dumps(hardware))
    return board


def test_a_board_sets_its_clock_before_it_checks_the_brokers_dates(
    site: Site, boards: list[MicroPythonBoard]
) -> None:
    # Powered on, the clock says 2000: every certificate looks not yet valid
    # until NTP has set it, which the program otherwise does once online.
    timely = mcu_board(site, "tls-esp32-ntp", {"platform": "esp32", "ntp": True})
    stuck = mcu_board(site, "tls-esp32-no-ntp", {"platform": "esp32", "ntp": False})
    axtls = mcu_board(site, "tls-esp8266", {"platform": "esp8266"})
    boards += [timely, stuck, axtls]
    for board in boards:
        board.start()
    eventually(lambda: site.readings("tls-esp32-ntp"), WAIT_S, show=timely.console)
    eventually(lambda: len(tls_failures(stuck)) >= 2, WAIT_S, show=stuck.console)
    assert "The certificate validity starts in the future" in tls_failures(stuck)[0]
    assert "edgewire: ntp" in stuck.console()
    assert stuck.step(), "it keeps trying"
    assert site.readings("tls-esp32-no-ntp") == []
    # An ESP8266's TLS (axTLS) cannot check a certificate: no start, no link.
    eventually(lambda: not axtls.step(), WAIT_S, show=axtls.console)
    assert "mqtts: this board's TLS cannot check certificates" in axtls.console()
    assert "link lost" not in axtls.console()


# -- edgewire flash --------------------------------------------------------------


def flash(site: Site, *args: str) -> subprocess.CompletedProcess[str]:
    """`edgewire flash`, run in the folder where `edgewire ca init` made the CA."""
    return subprocess.run(
        edgewire_argv("flash", *args),
        cwd=site.workdir,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def test_a_board_flashed_for_mqtts_publishes_to_the_edge(
    site: Site, tmp_path: Path, boards: list[MicroPythonBoard]
) -> None:
    device = "tls-flashed"
    broker_url = f"mqtts://127.0.0.1:{site.broker.tls_port}"
    settings = [
        "--device-id", device, "--wifi-ssid", "home", "--sensor", "synthetic",
        "--interval-s", "0.2", "--ring-max-samples", "32", "--ring-max-bytes", "2048",
    ]  # fmt: skip
    with SerialBoard(tmp_path / "board") as serial_board:
        port = serial_board.start()
        # No --ca: the CA of `edgewire ca init` in this folder.
        first = flash(
            site, "--port", port, "--broker", broker_url, *settings,
            "--provision", "--edge-data-dir", str(site.data_dir),
        )  # fmt: skip
        assert first.returncode == 0, first.stderr
        folder = serial_board.folder
        assert (folder / "ca.der").read_bytes() == der(site.ca_cert)
        config = json.loads((folder / "config.json").read_text())
        assert config["broker"]["tls"] is True
        assert (config["broker"]["port"], config["broker"]["user"]) == (
            site.broker.tls_port,
            device,
        )
        password = config["broker"]["password"]
        assert password not in first.stdout + first.stderr
        for broker in (site.broker, site.misnamed):
            broker.process.send_signal(signal.SIGHUP)  # what `flash --provision` asks for

        # The same again (the login it was given, the CA named): nothing to copy.
        login = f"mqtts://{device}:{quote(password, safe='')}@127.0.0.1:{site.broker.tls_port}"
        same = [*settings, "--broker", login, "--ca", str(site.ca_cert)]
        plan = flash(site, "--port", port, "--dry-run", *same)
        assert plan.returncode == 0, plan.stderr
        assert "copy 0 files" in plan.stdout, plan.stdout
        assert any(line.split()[:2] == ["skip", "ca.der"] for line in plan.stdout.splitlines())
        # --wait hears the board over TLS too (with a login that may read it).
        edge = f"edge:{quote(site.passwords['edge'], safe='')}"
        watcher = f"mqtts://{edge}@127.0.0.1:{site.broker.tls_port}"
        watch = ["--wait", "--wait-timeout", "30", "--wait-broker", watcher]
        again = flash(site, "--port", port, *same, *watch)
        assert again.returncode == 0, again.stderr
        assert "copied 0 files (0 bytes)" in again.stdout, again.stdout
        assert f"{device} is online; first sample:" in again.stdout
        serial_board.unplug()

    board = MicroPythonBoard(folder, None, TLS_HEAP)
    boards.append(board)
    board.start()
    eventually(lambda: len(site.readings(device)) >= 5, WAIT_S, show=board.console)
    assert board.step()
    assert "link lost" not in board.console(), board.console()
    assert "Traceback" not in board.console(), board.console()


def test_flash_refuses_an_mqtts_board_it_cannot_give_a_ca(tmp_path: Path, site: Site) -> None:
    garbage = tmp_path / "ca.crt"
    garbage.write_text("not a certificate\n")
    tls_url = f"mqtts://127.0.0.1:{site.broker.tls_port}"
    for args, fragment in [
        (["--broker", tls_url], "needs the CA certificate its certificate was issued by"),
        (["--broker", tls_url, "--ca", str(site.broker_cert)], "is not a CA certificate"),
        (["--broker", tls_url, "--ca", str(garbage)], "is not a certificate"),
        (["--broker", "mqtt://127.0.0.1", "--ca", str(site.ca_cert)], "needs an mqtts://"),
    ]:
        # In tmp_path: no edgewire-ca/ folder to fall back on.
        result = subprocess.run(
            edgewire_argv("flash", "--port", "/dev/ttyUSB9", "--device-id", "x", *args),
            cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert fragment in lines[0], (args, lines[0])


# -- an update over the air, over TLS -------------------------------------------


def test_update_mode_and_the_new_version_connect_over_tls(
    site: Site, tmp_path: Path, stepping: list[MicroPythonBoard]
) -> None:
    device = "tls-ota"
    board = tls_board(site, "micropython", device, der(site.ca_cert))
    stepping.append(board)
    board.start()
    eventually(lambda: site.readings(device), WAIT_S, show=board.console)
    new = marked_sensors(site.compiled, tmp_path / "new")
    tool = f"mqtts://laptop:{quote(site.passwords['laptop'], safe='')}@127.0.0.1"
    options = UpdateOptions(
        device_id=device,
        broker=parse_endpoint(f"{tool}:{site.broker.tls_port}", ("mqtts",)),
        ca=der(site.ca_cert),
        trial_s=30,
        timeout_s=120,
    )
    lines: list[str] = []
    report = update(options, lines.append, built=new)
    # "ready" and "need" came from update mode (ew_update), "done" from the
    # new version once online: each over its own TLS connection.
    assert report.state == "done", (report.error, lines, board.console()[-3000:])
    assert report.needed == ["ew_sensors.mpy"]
    assert (board.folder / "ca.der").read_bytes() == der(site.ca_cert), "the CA stays"
    eventually(
        lambda: any(r["metric"] == "ota_v" for r in site.readings(device)),
        WAIT_S,
        show=board.console,
    )
    assert "update mode" in board.console()
    assert "MemoryError" not in board.console()
    assert "Traceback" not in board.console(), board.console()[-3000:]


# -- simulated boards over TLS ---------------------------------------------------


def test_edgewire_sim_runs_its_boards_over_mqtts(site: Site, tmp_path: Path) -> None:
    password = site.login("tlssim-1")
    broker = f"mqtts://tlssim-1:{quote(password, safe='')}@127.0.0.1:{site.broker.tls_port}"

    def sim(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            edgewire_argv(
                "sim", "--broker", broker, "--devices", "1", "--prefix", "tlssim",
                "--data-dir", str(tmp_path / "sim"), *args,
            ),
            cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip

    # No --ca, and no edgewire-ca/ here: refused before any board starts.
    refused = sim("--count", "5")
    assert refused.returncode == 2, refused.stderr
    assert "an mqtts:// broker needs the CA certificate" in refused.stderr
    stranger = sim("--count", "5", "--timeout", "5", "--ca", str(site.stranger_cert))
    assert stranger.returncode == 1, "another CA's broker: nothing is stored"
    assert site.readings("tlssim-1") == []
    done = sim("--count", "20", "--rate", "20", "--timeout", "60", "--ca", str(site.ca_cert))
    assert done.returncode == 0, done.stdout + done.stderr
    seqs = eventually(lambda: {r["seq"] for r in site.readings("tlssim-1")} or None)
    assert seqs == set(range(20))
    assert password not in done.stdout + done.stderr
