"""`edgewire edge` as a systemd service: the unit (checked by systemd's own
`systemd-analyze`), the notification protocol over a real NOTIFY_SOCKET, and
`edgewire edge install-service`.

PID 1 here is not systemd, so no unit is started: the edge is run directly
with a datagram socket of our own as its NOTIFY_SOCKET.
"""

import logging
import os
import pwd
import re
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.config import EdgeSettings
from edge.service_unit import (
    CONFIG_NAME,
    SERVICE_USER,
    UNIT_NAME,
    console_script,
    default_config_text,
    unit_text,
)
from edgewire.errors import EdgewireError
from edgewire.mosquitto import PrivateMosquitto
from edgewire.notify import Notifier
from edgewire.settings import load_settings
from tests.helpers import Service, edge_service, eventually, run_edgewire

MAX_EXPOSURE = 4.5


def systemd_analyze(*args: str) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("systemd-analyze")
    assert tool is not None, "systemd-analyze is missing: run ./scripts/setup --dev"
    return subprocess.run(
        [tool, "--no-pager", *args], capture_output=True, text=True, timeout=60, check=False
    )


def write_unit(directory: Path, text: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / UNIT_NAME
    path.write_text(text)
    return path


def unit_settings(text: str) -> dict[str, list[str]]:
    """`Section.Key` -> its values, in order, from a unit file."""
    settings: dict[str, list[str]] = {}
    section = ""
    for line in text.splitlines():
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
        elif line and not line.startswith("#"):
            key, _, value = line.partition("=")
            settings.setdefault(f"{section}.{key}", []).append(value)
    return settings


# -- the unit, as systemd reads it -------------------------------------------


@pytest.mark.parametrize("gpio", [False, True], ids=["plain", "gpio"])
def test_systemd_verifies_the_unit_without_a_warning(tmp_path: Path, gpio: bool) -> None:
    unit = write_unit(tmp_path, unit_text(console_script(), gpio=gpio))
    result = systemd_analyze("verify", str(unit))
    assert result.returncode == 0, result.stderr
    # verify exits 0 on unknown keys and bad values, only warning about them
    assert result.stderr == ""


def test_the_broker_password_comes_as_a_credential(tmp_path: Path) -> None:
    secret = tmp_path / "mqtt-password"
    secret.write_text("s3cret\n")
    text = unit_text(console_script(), mqtt_password_file=secret)
    assert unit_settings(text)["Service.LoadCredential"] == [f"mqtt-password:{secret}"]
    assert "/run/credentials/edgewire-edge.service/mqtt-password" in text
    assert "s3cret" not in text
    result = systemd_analyze("verify", str(write_unit(tmp_path, text)))
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


def test_systemd_verify_catches_what_this_test_relies_on(tmp_path: Path) -> None:
    """The check above would see a typo or a missing program."""
    text = unit_text(console_script()).replace("UMask=0077", "UMask=0077\nProtectSystm=strict")
    assert systemd_analyze("verify", str(write_unit(tmp_path / "typo", text))).stderr != ""
    missing = unit_text(tmp_path / "nowhere" / "edgewire")
    assert systemd_analyze("verify", str(write_unit(tmp_path / "missing", missing))).stderr != ""


def test_awkward_paths_are_quoted_and_escaped(tmp_path: Path) -> None:
    venv = tmp_path / "my venv 100% $HOME"
    venv.mkdir()
    (venv / "edgewire").symlink_to(console_script())
    config = tmp_path / 'etc "x" 5% $USER' / CONFIG_NAME
    text = unit_text(venv / "edgewire", config_path=config)
    result = systemd_analyze("verify", str(write_unit(tmp_path / "unit", text)))
    assert (result.returncode, result.stderr) == (0, "")
    program = f'"{tmp_path}/my venv 100%% $HOME/edgewire"'  # no $ expansion in a program
    argument = f'"{tmp_path}/etc \\"x\\" 5%% $$USER/edge.toml"'
    assert unit_settings(text)["Service.ExecStart"] == [f"{program} edge --config {argument}"]


def test_a_program_path_systemd_refuses_is_an_error() -> None:
    with pytest.raises(EdgewireError, match="cannot go in a systemd unit"):
        unit_text(Path('/opt/my"venv/bin/edgewire'))


@pytest.mark.parametrize("gpio", [False, True], ids=["plain", "gpio"])
def test_exposure_level_is_low(tmp_path: Path, gpio: bool) -> None:
    unit = write_unit(tmp_path, unit_text(console_script(), gpio=gpio))
    result = systemd_analyze("security", "--offline=true", str(unit))
    assert result.stderr == ""
    found = re.search(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)", result.stdout)
    assert found is not None, result.stdout
    assert float(found.group(1)) <= MAX_EXPOSURE, result.stdout


def test_the_unit_says_what_the_service_needs() -> None:
    script = console_script()
    settings = unit_settings(unit_text(script, shutdown_grace_s=12.5))
    expected = {
        "Service.Type": ["notify"],
        "Service.ExecStart": [f"{script} edge --config /etc/edgewire/edge.toml"],
        "Service.ExecReload": ["/bin/kill -HUP $MAINPID"],
        "Service.WatchdogSec": ["30"],
        "Service.Restart": ["on-failure"],
        "Service.RestartSec": ["2"],
        "Service.TimeoutStopSec": ["18"],
        "Service.StateDirectory": ["edgewire"],
        "Service.ConfigurationDirectory": ["edgewire"],
        "Service.User": ["edgewire"],
        "Service.Group": ["edgewire"],
        "Service.ProtectSystem": ["strict"],
        "Service.ProtectHome": ["true"],
        "Service.PrivateDevices": ["true"],
        "Service.CapabilityBoundingSet": [""],
        "Service.UMask": ["0077"],
        "Service.MemoryDenyWriteExecute": ["true"],
        "Service.RestrictAddressFamilies": ["AF_UNIX AF_INET AF_INET6"],
        "Service.SystemCallFilter": ["@system-service", "~@privileged @resources"],
        "Install.WantedBy": ["multi-user.target"],
    }
    assert {key: settings.get(key) for key in expected} == expected
    assert "Service.DeviceAllow" not in settings
    assert "Service.SupplementaryGroups" not in settings


def test_gpio_opens_only_gpio_and_i2c_devices() -> None:
    settings = unit_settings(unit_text(console_script(), gpio=True))
    assert settings["Service.PrivateDevices"] == ["false"]
    assert settings["Service.DevicePolicy"] == ["closed"]
    assert settings["Service.DeviceAllow"] == [
        "char-gpiochip rw",
        "char-i2c rw",
        "/dev/gpiomem rw",
    ]
    assert settings["Service.SupplementaryGroups"] == ["gpio i2c"]


def test_a_program_under_home_keeps_home_readable() -> None:
    text = unit_text(Path("/home/pi/edgewire/.venv/bin/edgewire"))
    assert unit_settings(text)["Service.ProtectHome"] == ["read-only"]


# -- the default config --------------------------------------------------------


def test_the_default_config_is_accepted_as_written(tmp_path: Path) -> None:
    path = tmp_path / CONFIG_NAME
    path.write_text(default_config_text())
    settings = load_settings(EdgeSettings, path, {}, environ={})
    assert settings.data_dir == "/var/lib/edgewire"
    assert (settings.mqtt, settings.cloud, settings.http_port) == (
        "mqtt://127.0.0.1:1883",
        "grpc://127.0.0.1:50051",
        9100,
    )


def test_every_commented_setting_is_one_the_edge_knows(tmp_path: Path) -> None:
    """Uncommenting any example keeps the file valid."""
    text, _, rules = default_config_text().partition("# [[rules]]")
    assert rules, "the example rules block is commented out"
    examples = re.findall(r"^# (\w+ = .+)$", text, flags=re.MULTILINE)
    assert len(examples) >= 10
    path = tmp_path / CONFIG_NAME
    path.write_text(text + "\n".join(examples) + "\n")
    settings = load_settings(EdgeSettings, path, {}, environ={})
    assert settings.edge_id == "greenhouse-pi"
    uncommented = ("[[rules]]" + rules).replace("\n# ", "\n").replace("\n#\n", "\n")
    path.write_text(text + "\n" + uncommented)
    settings = load_settings(EdgeSettings, path, {}, environ={})
    assert [rule["name"] for rule in settings.rules] == [
        "sane temperatures",
        "quiet temperatures",
    ]


# -- Notifier against a datagram socket -----------------------------------------


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A directory whose paths fit in a sockaddr_un (108 bytes)."""
    with tempfile.TemporaryDirectory(prefix="ew-") as name:
        yield Path(name)


def bind_datagram(address: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(address)
    sock.settimeout(5)
    return sock


@pytest.fixture
def systemd(short_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    """What systemd listens on: NOTIFY_SOCKET points at it."""
    path = short_dir / "notify"
    with bind_datagram(str(path)) as sock:
        monkeypatch.setenv("NOTIFY_SOCKET", str(path))
        monkeypatch.delenv("WATCHDOG_USEC", raising=False)
        monkeypatch.delenv("WATCHDOG_PID", raising=False)
        yield sock


def test_each_notification_is_one_datagram(systemd: socket.socket) -> None:
    with Notifier() as notifier:
        assert notifier.enabled
        assert notifier.ready()
        assert systemd.recv(4096) == b"READY=1"
        assert notifier.status("12 buffered, cloud connected")
        assert systemd.recv(4096) == b"STATUS=12 buffered, cloud connected"
        assert notifier.watchdog()
        assert systemd.recv(4096) == b"WATCHDOG=1"
        assert notifier.stopping()
        assert systemd.recv(4096) == b"STOPPING=1"


def test_reloading_carries_the_monotonic_time(systemd: socket.socket) -> None:
    with Notifier() as notifier:
        before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        assert notifier.reloading()
        after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    found = re.fullmatch(rb"RELOADING=1\nMONOTONIC_USEC=(\d+)", systemd.recv(4096))
    assert found is not None
    assert before <= int(found.group(1)) <= after


def test_status_is_one_line_of_utf8(systemd: socket.socket) -> None:
    with Notifier() as notifier:
        notifier.status("23.5 °C\nREADY=1\0  sensor ✓")
    assert systemd.recv(4096) == "STATUS=23.5 °C READY=1 sensor ✓".encode()


def test_abstract_socket_addresses_work(monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"edgewire-test-{uuid.uuid4().hex}"
    with bind_datagram("\0" + name) as sock:
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        with Notifier() as notifier:
            assert notifier.ready()
        assert sock.recv(4096) == b"READY=1"


def test_without_notify_socket_nothing_is_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    monkeypatch.setenv("WATCHDOG_USEC", "2000000")
    with Notifier() as notifier:
        assert not notifier.enabled
        sent = [
            notifier.ready(),
            notifier.status("x"),
            notifier.watchdog(),
            notifier.reloading(),
            notifier.stopping(),
        ]
        assert sent == [False] * 5
        assert notifier.watchdog_interval_s() is None


@pytest.mark.parametrize(
    ("usec", "pid", "interval"),
    [
        ("2000000", None, 1.0),
        ("30000000", "self", 15.0),
        ("30000000", "1", None),  # another process's watchdog
        (None, None, None),
        ("0", None, None),
        ("soon", None, None),
    ],
)
def test_watchdog_interval_is_half_the_timeout(
    systemd: socket.socket,
    monkeypatch: pytest.MonkeyPatch,
    usec: str | None,
    pid: str | None,
    interval: float | None,
) -> None:
    if usec is not None:
        monkeypatch.setenv("WATCHDOG_USEC", usec)
    if pid is not None:
        monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()) if pid == "self" else pid)
    with Notifier() as notifier:
        assert notifier.watchdog_interval_s() == interval


def test_a_missing_socket_is_logged_once_and_never_raises(
    short_dir: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    path = short_dir / "later"
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    caplog.set_level(logging.WARNING, logger="edgewire.notify")
    with Notifier() as notifier:
        assert [notifier.ready(), notifier.watchdog(), notifier.status("x")] == [False] * 3
        warnings = [r for r in caplog.records if r.name == "edgewire.notify"]
        assert len(warnings) == 1
        assert warnings[0].levelno == logging.WARNING
        # systemd comes (back): the next notification connects afresh
        with bind_datagram(str(path)) as sock:
            assert notifier.watchdog()
            assert sock.recv(4096) == b"WATCHDOG=1"
        # ... and goes away again while connected
        path.unlink()
        assert notifier.watchdog() is False
    assert len([r for r in caplog.records if r.name == "edgewire.notify"]) == 1


# -- a real edge process ---------------------------------------------------------


def drain(sock: socket.socket, into: list[str]) -> list[str]:
    """Every notification line that arrived so far, appended to `into`."""
    sock.setblocking(False)
    while True:
        try:
            datagram = sock.recv(4096)
        except BlockingIOError:
            return into
        into.extend(datagram.decode(errors="replace").splitlines())


def test_the_edge_speaks_the_notify_protocol(
    tmp_path: Path,
    short_dir: Path,
    mosquitto: PrivateMosquitto,
    cloud: Service,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    path = short_dir / "notify"
    with bind_datagram(str(path)) as sock:
        monkeypatch.setenv("NOTIFY_SOCKET", str(path))
        monkeypatch.setenv("WATCHDOG_USEC", "2000000")  # a ping a second
        edge = edge_service(tmp_path, mosquitto.url, cloud.grpc_port)
        edge.start()
        lines: list[str] = []
        try:
            eventually(lambda: "READY=1" in drain(sock, lines), timeout_s=10, show=lambda: lines)
            eventually(
                lambda: drain(sock, lines).count("WATCHDOG=1") >= 2,
                timeout_s=10,
                show=lambda: lines,
            )
            assert any(line.startswith("STATUS=") for line in lines), lines
            assert edge.process is not None
            edge.process.send_signal(signal.SIGHUP)  # what ExecReload= does

            def reloaded() -> bool:
                drain(sock, lines)
                return "RELOADING=1" in lines and "READY=1" in lines[lines.index("RELOADING=1") :]

            eventually(reloaded, timeout_s=10, show=lambda: lines)
            usec = lines[lines.index("RELOADING=1") + 1]
            assert re.fullmatch(r"MONOTONIC_USEC=\d+", usec), lines
        finally:
            code = edge.stop()
        assert code == 0, edge.log()
        assert "STOPPING=1" in drain(sock, lines), lines
        assert lines.index("READY=1") < lines.index("STOPPING=1")


# -- edgewire edge install-service -------------------------------------------------


def test_print_writes_the_unit_to_stdout() -> None:
    result = run_edgewire("edge", "install-service", "--print")
    assert (result.returncode, result.stderr) == (0, "")
    settings = unit_settings(result.stdout)
    assert settings["Service.Type"] == ["notify"]
    assert settings["Service.ExecStart"] == [
        f"{console_script()} edge --config /etc/edgewire/edge.toml"
    ]
    assert "Service.DeviceAllow" not in settings
    gpio = run_edgewire("edge", "install-service", "--print", "--gpio")
    assert "char-gpiochip rw" in unit_settings(gpio.stdout)["Service.DeviceAllow"]


def test_install_writes_the_unit_and_a_private_config(tmp_path: Path) -> None:
    units, configs = tmp_path / "system", tmp_path / "etc"
    result = run_edgewire(
        "edge", "install-service", "--unit-dir", str(units), "--config-dir", str(configs),
        "--no-user",
    )  # fmt: skip
    assert (result.returncode, result.stderr) == (0, "")
    unit, config = units / UNIT_NAME, configs / CONFIG_NAME
    assert stat.S_IMODE(unit.stat().st_mode) == 0o644
    assert stat.S_IMODE(config.stat().st_mode) == 0o640
    assert config.read_text() == default_config_text()
    assert result.stdout.splitlines()[-2:] == [
        "next: systemctl daemon-reload",
        "next: systemctl enable --now edgewire-edge",
    ]
    printed = run_edgewire("edge", "install-service", "--print", "--config-dir", str(configs))
    assert unit.read_text() == printed.stdout
    assert unit_settings(unit.read_text())["Service.ExecStart"] == [
        f"{console_script()} edge --config {config}"
    ]
    verified = systemd_analyze("verify", str(unit))
    assert (verified.returncode, verified.stderr) == (0, "")


def test_install_keeps_an_existing_config(tmp_path: Path) -> None:
    configs = tmp_path / "etc"
    configs.mkdir()
    config = configs / CONFIG_NAME
    config.write_text('mqtt = "mqtt://10.0.0.2:1883"\nshutdown_grace_s = 42\n')
    config.chmod(0o600)
    args = ["edge", "install-service", "--unit-dir", str(tmp_path), "--config-dir", str(configs)]
    result = run_edgewire(*args, "--no-user", "--gpio")
    assert result.returncode == 0, result.stderr
    assert f"kept {config}" in result.stdout.splitlines()
    assert config.read_text() == 'mqtt = "mqtt://10.0.0.2:1883"\nshutdown_grace_s = 42\n'
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    settings = unit_settings((tmp_path / UNIT_NAME).read_text())
    assert settings["Service.TimeoutStopSec"] == ["47"]  # the config's grace, and a margin
    assert settings["Service.SupplementaryGroups"] == ["gpio i2c"]


def test_install_refuses_a_broken_config_in_one_line(tmp_path: Path) -> None:
    (tmp_path / CONFIG_NAME).write_text("shutdown_grace_s = -1\n")
    args = ["--unit-dir", str(tmp_path), "--config-dir", str(tmp_path), "--no-user"]
    result = run_edgewire("edge", "install-service", *args)
    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1
    assert "shutdown_grace_s" in result.stderr
    assert not (tmp_path / UNIT_NAME).exists()


def test_install_where_it_cannot_write_fails_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    args = ["--unit-dir", str(tmp_path / "file" / "units"), "--config-dir", str(tmp_path)]
    result = run_edgewire("edge", "install-service", *args, "--no-user")
    assert result.returncode == 1
    assert len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith("edgewire: cannot install the service:")


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


@pytest.mark.skipif(os.geteuid() != 0, reason="creating a system user takes root")
@pytest.mark.skipif(_user_exists(SERVICE_USER), reason="a real edgewire user is left alone")
def test_install_creates_the_system_user(tmp_path: Path) -> None:
    try:
        args = ["--unit-dir", str(tmp_path), "--config-dir", str(tmp_path / "etc")]
        result = run_edgewire("edge", "install-service", *args)
        assert result.returncode == 0, result.stderr
        assert f"created the system user {SERVICE_USER}" in result.stdout.splitlines()
        user = pwd.getpwnam(SERVICE_USER)
        assert user.pw_shell == "/usr/sbin/nologin"
        assert user.pw_uid < 1000  # a system user
        config = (tmp_path / "etc" / CONFIG_NAME).stat()
        assert (config.st_uid, config.st_gid) == (0, user.pw_gid)
        again = run_edgewire("edge", "install-service", *args)
        assert f"user {SERVICE_USER} exists" in again.stdout.splitlines()
    finally:
        if _user_exists(SERVICE_USER):
            subprocess.run(["userdel", SERVICE_USER], check=True, timeout=30)


def test_gpio_install_warns_when_the_groups_are_missing(tmp_path: Path) -> None:
    result = run_edgewire(
        "edge", "install-service", "--gpio", "--no-user",
        "--unit-dir", str(tmp_path / "units"), "--config-dir", str(tmp_path / "etc"),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    missing = [g for g in ("gpio", "i2c") if not _has_group(g)]
    if missing:
        assert "the service will not start until they exist" in result.stdout
    else:
        assert "will not start" not in result.stdout


def _has_group(name: str) -> bool:
    import grp

    try:
        grp.getgrnam(name)
    except KeyError:
        return False
    return True
