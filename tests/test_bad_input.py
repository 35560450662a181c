"""Bad input from a client we did not write (mosquitto_pub): every bad
payload lands in the dead-letter store with its reason, every good one
arrives, and the edge keeps running."""

import json
import subprocess
import time
from pathlib import Path

import httpx

from edgewire.mosquitto import PrivateMosquitto
from tests.helpers import Service, eventually, run_edgewire

NOW = int(time.time())


def good(seq: int) -> str:
    return json.dumps({"seq": seq, "boot": 1, "ts": NOW, "m": {"temp_c": 20.5 + seq}})


BAD = [
    # (topic device id, payload, reason the edge must give)
    ("dev-a", "this is not json", "not_json"),
    ("dev-a", '{"boot": 1, "m": {"temp_c": 1}}', "invalid"),  # no seq
    ("dev-a", '{"seq": 9, "boot": 1, "m": {"temp_c": NaN}}', "not_json"),
    ("dev-a", '{"seq": "7", "boot": 1, "m": {"temp_c": 1}}', "invalid"),
    ("dev-a", '{"seq": 8, "boot": 1, "m": {}}', "invalid"),
    ("dev-a", '{"seq": 8, "boot": 1, "m": {"Bad-Name": 1}}', "invalid"),
    ("dev-a", "[]", "empty"),
    (
        "dev-a",
        json.dumps({"seq": 10, "boot": 1, "m": {"x": 1}, "pad": "x" * 100 * 1024}),
        "too_large",
    ),
    ("Bad_Device!", good(1), "bad_device_id"),
]


def publish(mosquitto: PrivateMosquitto, device: str, payload: str) -> None:
    subprocess.run(
        ["mosquitto_pub", "-h", "127.0.0.1", "-p", str(mosquitto.port), "-q", "1",
         "-t", f"edgewire/{device}/telemetry", "-s"],
        input=payload.encode(),
        check=True,
        timeout=10,
    )  # fmt: skip


def test_bad_payloads_are_dead_lettered_and_good_ones_arrive(
    tmp_path: Path, mosquitto: PrivateMosquitto, cloud: Service, edge: Service
) -> None:
    expected = []
    for n, (device, payload, _) in enumerate(BAD):
        publish(mosquitto, device, payload)
        publish(mosquitto, "dev-a", good(100 + n))  # good traffic in between
        expected.append(100 + n)
    # A JSON array with one bad element: the good elements still count.
    mixed = "[" + ",".join([good(20), '{"seq": 21, "boot": 1, "m": {"t": "warm"}}', good(22)]) + "]"
    publish(mosquitto, "dev-a", mixed)
    expected = sorted([*expected, 20, 22])

    def stored_seqs() -> list[int]:
        return sorted(r["seq"] for r in cloud.get("/api/readings", device="dev-a"))

    eventually(lambda: stored_seqs() == expected, show=stored_seqs)

    letters = eventually(
        lambda: _dead_letters(tmp_path) if len(_dead_letters(tmp_path)) >= 10 else None
    )
    reasons = [letter["reason"] for letter in letters]
    assert reasons == [reason for _, _, reason in BAD] + ["invalid"]
    by_reason = {letter["reason"]: letter for letter in letters}
    assert by_reason["too_large"]["size"] > 100 * 1024
    assert "seq" in letters[1]["detail"], letters[1]["detail"]
    assert letters[-1]["detail"].startswith("element 1:"), "the bad element is named"
    assert by_reason["bad_device_id"]["topic"] == "edgewire/Bad_Device!/telemetry"

    # The health report is refreshed every half second: wait for it to catch up.
    health = eventually(lambda: (h := edge.get("/healthz"))["dead_letters"] == 10 and h)
    assert health["status"] == "ok"
    metrics = httpx.get(edge.url + "/metrics", timeout=10).text
    assert 'edgewire_edge_dead_letters_total{reason="not_json"} 2.0' in metrics
    assert 'edgewire_edge_dead_letters_total{reason="too_large"} 1.0' in metrics


def _dead_letters(tmp_path: Path) -> list[dict[str, object]]:
    result = run_edgewire("edge", "dead-letters", "--data-dir", str(tmp_path / "edge"), "--json")
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]
