"""The rules and the Pi's own sensors inside a running edge: what reaches
the cloud is what the rules let through, `stored` still covers what they
filtered out (so boards do not resend it forever), the rules' counters are
in /metrics, an aggregate window survives a SIGKILL of the edge, a reload
swaps the rules, and a bad rule stops start-up with a line naming it."""

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest

from edgewire.mosquitto import PrivateMosquitto
from tests.helpers import Service, edge_service, eventually, mqtt_sub, run_edgewire

RULES = """
[[rules]]
name = "sane"
metrics = "t"
range = { min = -40, max = 85 }

[[rules]]
name = "quiet"
metrics = "t"
deadband = { abs = 0.5 }
"""

WINDOW = """
[[rules]]
name = "per minute"
metrics = "light"
aggregate = { window_s = 60, stats = ["count", "mean"] }
"""


def publish(port: int, device: str, samples: list[dict[str, object]]) -> None:
    lines = "".join(json.dumps(s) + "\n" for s in samples)
    subprocess.run(
        ["mosquitto_pub", "-h", "127.0.0.1", "-p", str(port), "-q", "1",
         "-t", f"edgewire/{device}/telemetry", "-l"],
        input=lines, text=True, check=True, timeout=30,
    )  # fmt: skip


def start_edge(
    tmp_path: Path, mosquitto: PrivateMosquitto, cloud: Service, rules: str
) -> tuple[Service, Path]:
    config = tmp_path / "edge.toml"
    config.write_text(rules)
    edge = edge_service(tmp_path, mosquitto.url, cloud.grpc_port, extra=["--config", str(config)])
    return edge.start(), config


def values(cloud: Service, device: str, metric: str) -> list[tuple[int, float]]:
    rows = cloud.get("/api/readings", device=device, metric=metric, limit=1000)
    return [(r["seq"], r["value"]) for r in rows]


def test_rules_reduce_what_reaches_the_cloud_and_stored_still_covers_it(
    tmp_path: Path, mosquitto: PrivateMosquitto, cloud: Service
) -> None:
    edge, config = start_edge(tmp_path, mosquitto, cloud, RULES)
    watermark = mqtt_sub(mosquitto.port, "edgewire/r-1/stored", "-W", "60")
    try:
        now = time.time()
        readings = [20.0, 20.1, 20.2, 21.0, 99.0, 21.1, 21.9, 22.0, 22.1, 22.2]
        publish(mosquitto.port, "r-1",
                [{"seq": i, "boot": 1, "ts": now + i, "m": {"t": v}}
                 for i, v in enumerate(readings)])  # fmt: skip
        # 99 is out of range; the deadband keeps moves of more than 0.5.
        kept = eventually(lambda: (v := values(cloud, "r-1", "t")) and v[-1][0] == 6 and v)
        assert kept == [(0, 20.0), (3, 21.0), (6, 21.9)]
        # Every sample, filtered or not, is covered: the board may forget them all.
        lines = watermark.stdout
        assert lines is not None
        eventually(lambda: '"seq":9' in lines.readline().replace(" ", ""))
        assert edge.get_metric('edgewire_edge_rule_metrics_dropped_total{rule="sane"}') == 1
        assert edge.get_metric('edgewire_edge_rule_metrics_dropped_total{rule="quiet"}') == 6
        assert edge.get_metric("edgewire_edge_samples_filtered_total") == 7

        # A reload with a bad rule is refused; the running rules stay.
        config.write_text(RULES.replace("abs = 0.5", "abs = 0.5, pct = 2"))
        assert edge.process is not None
        edge.process.send_signal(signal.SIGHUP)
        eventually(lambda: "reload refused" in edge.log())
        assert 'rule \\"quiet\\" (rules[2]): deadband' in edge.log()
        # A good one replaces them: no deadband any more.
        config.write_text(RULES.split('[[rules]]\nname = "quiet"', maxsplit=1)[0])
        edge.process.send_signal(signal.SIGHUP)
        eventually(lambda: edge.get_metric('edgewire_edge_reloads_total{outcome="applied"}') == 1)
        publish(mosquitto.port, "r-1",
                [{"seq": 10 + i, "boot": 1, "ts": now + 10 + i, "m": {"t": 22.3 + i / 10}}
                 for i in range(3)])  # fmt: skip
        eventually(lambda: [s for s, _ in values(cloud, "r-1", "t")][-3:] == [10, 11, 12])
    finally:
        watermark.terminate()
        watermark.wait()
        if watermark.stdout is not None:
            watermark.stdout.close()
        assert edge.stop() == 0


def test_an_aggregate_window_survives_a_sigkill_of_the_edge(
    tmp_path: Path, mosquitto: PrivateMosquitto, cloud: Service
) -> None:
    edge, _ = start_edge(tmp_path, mosquitto, cloud, WINDOW)
    start = (time.time() // 60 - 10) * 60  # an old, whole minute
    first = [{"seq": i, "boot": 1, "ts": start + i, "m": {"light": float(i), "rh": 40.0}}
             for i in range(5)]  # fmt: skip
    publish(mosquitto.port, "w-1", first)
    eventually(lambda: len(values(cloud, "w-1", "rh")) == 5)
    edge.kill()
    edge.start()
    later = [{"seq": 5 + i, "boot": 1, "ts": start + 5 + i, "m": {"light": 10.0, "rh": 40.0}}
             for i in range(5)]  # fmt: skip
    closing = {"seq": 10, "boot": 1, "ts": start + 60, "m": {"light": 0.0, "rh": 40.0}}
    publish(mosquitto.port, "w-1", [*later, closing])
    counted = eventually(lambda: values(cloud, "w-1", "light_count"))
    assert counted == [(10, 10.0)], "the window counted the readings from before the kill"
    [(seq, mean)] = values(cloud, "w-1", "light_mean")
    assert seq == 10
    assert mean == pytest.approx((0 + 1 + 2 + 3 + 4 + 5 * 10.0) / 10)
    assert values(cloud, "w-1", "light") == [], "the raw values were folded into the window"
    assert edge.stop() == 0


def test_a_bad_rule_stops_start_up_with_one_line_naming_it(tmp_path: Path) -> None:
    config = tmp_path / "edge.toml"
    config.write_text('[[rules]]\nname = "odd"\nmetrics = "t"\nconvert = "furlongs"\n')
    result = run_edgewire("edge", "--config", str(config), "--data-dir", str(tmp_path / "d"))
    assert result.returncode == 2
    message = result.stderr.strip().splitlines()[-1]
    assert 'rule "odd" (rules[1]): convert' in message
    assert "furlongs" in message


def test_the_pis_own_sensor_reports_as_a_device(
    tmp_path: Path, mosquitto: PrivateMosquitto, cloud: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EDGEWIRE_SIM_PI", "1")  # no Pi here: the simulated pin and I2C layer
    config = (
        '[gpio]\ndevice_id = "pi-self"\ninterval_s = 0.2\nsimulate = true\n'
        'i2c_sensors = [{ kind = "bme280", address = 0x76 }]\nstatus_led_pin = 17\n'
    )
    edge, _ = start_edge(tmp_path, mosquitto, cloud, config)
    try:
        device = eventually(
            lambda: next((d for d in cloud.get("/api/devices") if d["id"] == "pi-self"), None)
        )
        assert {"temp_c", "rh", "pressure_hpa"} <= set(device["metrics"])
        temps = eventually(lambda: values(cloud, "pi-self", "temp_c"))
        assert all(-40 <= t <= 85 for _, t in temps)
        assert (edge.get_metric("edgewire_edge_local_samples_total") or 0) >= len(temps)
        assert edge.get_metric("edgewire_edge_local_gpio_errors_total") == 0
    finally:
        assert edge.stop() == 0
