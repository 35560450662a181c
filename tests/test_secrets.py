"""Secrets stay secret: a password in a broker or bus URL never reaches a
log line, an error message or `--help`."""

import time
from pathlib import Path

from edgewire.mosquitto import PrivateMosquitto
from tests.helpers import Service, edge_service, eventually, run_edgewire

SECRET = "s3cret-Pa55"


def test_a_bad_setting_is_named_without_its_password() -> None:
    result = run_edgewire("edge", "--mqtt", f"mqtx://edge:{SECRET}@127.0.0.1:1883")
    assert result.returncode == 2
    assert "edge:***@127.0.0.1" in result.stderr
    assert SECRET not in result.stderr + result.stdout


def test_the_running_edge_never_logs_its_broker_password(
    tmp_path: Path, mosquitto: PrivateMosquitto, cloud: Service
) -> None:
    url = mosquitto.url.replace("mqtt://", f"mqtt://edge:{SECRET}@")
    edge = edge_service(tmp_path, url, cloud.grpc_port, extra=["--log-level", "debug"])
    edge.start()
    try:
        eventually(lambda: edge.get("/healthz")["mqtt"] == "connected")
        time.sleep(0.5)
    finally:
        assert edge.stop() == 0
    log = edge.log()
    assert "edge:***@" in log, "the broker is named, redacted"
    assert SECRET not in log


def test_help_shows_no_secret() -> None:
    for command in (["edge"], ["cloud"], ["edge", "dead-letters"]):
        result = run_edgewire(*command, "--help")
        assert result.returncode == 0
        assert "password@" not in result.stdout
        assert "guest:guest" not in result.stdout
