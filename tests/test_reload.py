"""`systemctl reload` (SIGHUP): the edge reads its config again and takes
what it can while running; a bad new config is refused, logged, and the old
one keeps running. The cloud, which has nothing to reload, is not killed by
the signal (SIGHUP's default action)."""

import signal
from pathlib import Path

import httpx

from edgewire.mosquitto import PrivateMosquitto
from edgewire.procs import free_port
from tests.helpers import Service, edge_service, eventually


def write_config(path: Path, mosquitto: PrivateMosquitto, unhealthy_after_s: str) -> None:
    path.write_text(
        f'mqtt = "{mosquitto.url}"\n'
        f'cloud = "grpc://127.0.0.1:{free_port()}"\n'  # nobody there: the stream stays down
        f"unhealthy_after_s = {unhealthy_after_s}\n"
    )


def health(edge: Service) -> tuple[int, str]:
    response = httpx.get(edge.url + "/healthz", timeout=5)
    return response.status_code, response.json()["status"]


def test_sighup_applies_a_good_config_and_refuses_a_bad_one(
    tmp_path: Path, mosquitto: PrivateMosquitto, cloud: Service
) -> None:
    config = tmp_path / "edge.toml"
    write_config(config, mosquitto, "3600")
    edge = edge_service(tmp_path, mosquitto.url, 1, extra=["--config", str(config)])
    # Flags beat the file: drop the fixture's --mqtt/--cloud so the file speaks.
    edge.argv = [a for a in edge.argv if a not in ("--mqtt", mosquitto.url, "--cloud")]
    edge.argv = [a for a in edge.argv if not a.startswith("grpc://")]
    edge.start()
    try:
        assert health(edge) == (200, "ok"), "down for less than an hour: healthy"
        assert edge.process is not None

        config.write_text("unhealthy_after_s = -5\n")
        edge.process.send_signal(signal.SIGHUP)
        eventually(lambda: "reload refused" in edge.log())
        assert "unhealthy_after_s" in edge.log()
        assert health(edge) == (200, "ok"), "the old config keeps running"

        write_config(config, mosquitto, "0.5")
        edge.process.send_signal(signal.SIGHUP)
        eventually(lambda: health(edge) == (503, "cloud unreachable"))
        assert edge.get_metric('edgewire_edge_reloads_total{outcome="applied"}') == 1
        assert edge.get_metric('edgewire_edge_reloads_total{outcome="refused"}') == 1
        # The cloud URL in the file changed too (a new free port): that one
        # needs a restart, and the log says so.
        assert "take effect at the next restart" in edge.log()
    finally:
        assert edge.stop() == 0


def test_sighup_does_not_kill_the_cloud(cloud: Service) -> None:
    assert cloud.process is not None
    cloud.process.send_signal(signal.SIGHUP)
    eventually(lambda: "SIGHUP ignored" in cloud.log())
    assert cloud.process.poll() is None
    assert cloud.get("/healthz") == {"status": "ok"}
