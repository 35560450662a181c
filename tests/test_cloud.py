"""The cloud as a real process, driven by a gRPC client speaking edgewire.v1
(as an edge would) and by HTTP/SSE clients (as dashboards would)."""

import json
import queue
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect as ws_connect

from edgewire.postgres import PrivatePostgres
from edgewire.procs import edgewire_argv
from edgewire.sample import Sample
from edgewire.tail import format_command, format_sample, format_status, parse_sse
from edgewire.v1 import edgewire_pb2 as pb
from edgewire.v1 import edgewire_pb2_grpc as pb_grpc
from edgewire.wire import to_proto
from tests.helpers import Service, SseClient, cloud_service, eventually

TS = 1_800_000_000.0


class FakeEdge:
    """An Ingest stream driven step by step: send a message, await replies."""

    def __init__(self, channel: grpc.Channel) -> None:
        self._outbox: queue.Queue[pb.EdgeMessage | None] = queue.Queue()
        self.replies: queue.Queue[pb.CloudMessage] = queue.Queue()
        stub = pb_grpc.TelemetryStub(channel)  # type: ignore[no-untyped-call]
        self._call = stub.Ingest(iter(self._outbox.get, None))
        self.error: grpc.RpcError | None = None
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        try:
            for reply in self._call:
                self.replies.put(reply)
        except grpc.RpcError as exc:
            self.error = exc

    def send(self, message: pb.EdgeMessage) -> None:
        self._outbox.put(message)

    def batch(self, batch_id: int, samples: list[Sample]) -> pb.Ack:
        self.send(
            pb.EdgeMessage(
                batch=pb.Batch(batch_id=batch_id, samples=[to_proto(s) for s in samples])
            )
        )
        reply = self.replies.get(timeout=10)
        assert reply.WhichOneof("kind") == "ack"
        return reply.ack

    def close(self) -> None:
        self._outbox.put(None)


@pytest.fixture
def channel(cloud: Service) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(f"127.0.0.1:{cloud.grpc_port}") as chan:
        yield chan


@pytest.fixture
def edge_stream(channel: grpc.Channel) -> Iterator[FakeEdge]:
    stream = FakeEdge(channel)
    stream.send(pb.EdgeMessage(hello=pb.Hello(edge_id="fake-edge", software_version="test")))
    yield stream
    stream.close()


def s(device: str, seq: int, **metrics: float | bool) -> Sample:
    return Sample(device, 1, seq, TS + seq, metrics or {"t": float(seq)})


def test_batches_are_acked_after_commit_and_resends_are_harmless(
    cloud: Service, edge_stream: FakeEdge
) -> None:
    ack = edge_stream.batch(1, [s("a", 0), s("a", 1)])
    assert (ack.batch_id, ack.stored, ack.duplicates) == (1, 2, 0)
    assert len(cloud.get("/api/readings", device="a")) == 2, "stored before the ack"
    again = edge_stream.batch(2, [s("a", 1), s("a", 2)])
    assert (again.stored, again.duplicates) == (1, 1)
    assert [r["seq"] for r in cloud.get("/api/readings", device="a")] == [0, 1, 2]


def test_samples_breaking_the_contract_are_refused_but_the_batch_is_acked(
    cloud: Service, edge_stream: FakeEdge
) -> None:
    bad = Sample("NOT valid", 1, 1, TS, {"t": 1.0})
    nan = Sample("b", 1, 2, TS, {"t": float("nan")})
    ack = edge_stream.batch(7, [bad, s("b", 1), nan])
    assert (ack.stored, ack.duplicates, ack.refused) == (1, 0, 2)
    assert [r["seq"] for r in cloud.get("/api/readings", device="b")] == [1]


def test_a_batch_before_hello_is_refused(channel: grpc.Channel) -> None:
    stream = FakeEdge(channel)
    stream.send(pb.EdgeMessage(batch=pb.Batch(batch_id=1)))
    eventually(lambda: stream.error is not None)
    assert stream.error is not None
    assert stream.error.code() == grpc.StatusCode.FAILED_PRECONDITION


def test_status_changes_reach_devices_and_the_live_feed(
    cloud: Service, edge_stream: FakeEdge
) -> None:
    with SseClient(cloud.url + "/api/stream") as live:
        edge_stream.send(
            pb.EdgeMessage(status=pb.DeviceStatus(device_id="c", status="online", at=TS))
        )
        eventually(lambda: any(e.get("event") == "status" for e in live.events))
    assert cloud.get("/api/devices") == [
        {"id": "c", "status": "online", "last_seen": None, "metrics": [], "samples": 0,
         "edge": "fake-edge", "edge_buffered": None, "edge_oldest_age_s": None,
         "edge_reported_at": None}
    ]  # fmt: skip
    edge_stream.send(
        pb.EdgeMessage(stats=pb.EdgeStats(at=TS, buffered=120, oldest_age_s=3.5, delivery_rate=40))
    )
    eventually(lambda: cloud.get("/api/devices")[0]["edge_buffered"] == 120)
    assert cloud.get("/api/devices")[0]["edge_oldest_age_s"] == 3.5
    edge_stream.send(  # nonsense figures are ignored, the stream goes on
        pb.EdgeMessage(stats=pb.EdgeStats(at=TS + 1, buffered=1, oldest_age_s=float("nan")))
    )
    edge_stream.send(
        pb.EdgeMessage(status=pb.DeviceStatus(device_id="c", status="offline", at=TS + 2))
    )
    eventually(lambda: cloud.get("/api/devices")[0]["status"] == "offline")
    assert cloud.get("/api/devices")[0]["edge_buffered"] == 120
    metrics = httpx.get(cloud.url + "/metrics", timeout=10).text
    assert "edgewire_cloud_edge_stats_refused_total 1.0" in metrics


def test_sse_resumes_after_last_event_id_without_gaps_or_repeats(
    cloud: Service, edge_stream: FakeEdge
) -> None:
    edge_stream.batch(1, [s("a", i) for i in range(10)])
    with SseClient(cloud.url + "/api/stream") as first:
        edge_stream.batch(2, [s("a", i) for i in range(10, 13)])
        eventually(lambda: len(first.samples()) == 3)
    last_id = first.samples()[1]["id"]
    with SseClient(cloud.url + "/api/stream", headers={"Last-Event-ID": str(last_id)}) as resumed:
        edge_stream.batch(3, [s("a", 13), s("b", 0)])
        eventually(lambda: len(resumed.samples()) >= 3)
        with SseClient(
            cloud.url + "/api/stream?device=b", headers={"Last-Event-ID": "0"}
        ) as only_b:
            eventually(lambda: len(only_b.samples()) >= 1)
    assert [(x["device"], x["seq"]) for x in resumed.samples()] == [("a", 12), ("a", 13), ("b", 0)]
    assert [x["device"] for x in only_b.samples()] == ["b"]


def _collect(call: Any, into: "queue.Queue[pb.SampleEvent]") -> None:
    try:
        for event in call:
            into.put(event)
    except grpc.RpcError as exc:
        if exc.code() != grpc.StatusCode.CANCELLED:
            raise


def subscribe(
    channel: grpc.Channel, request: pb.SubscribeRequest
) -> tuple[Any, "queue.Queue[pb.SampleEvent]"]:
    stub = pb_grpc.TelemetryStub(channel)  # type: ignore[no-untyped-call]
    call = stub.Subscribe(request)
    events: queue.Queue[pb.SampleEvent] = queue.Queue()
    threading.Thread(target=_collect, args=(call, events), daemon=True).start()
    return call, events


def test_grpc_subscribe_replays_then_goes_live(
    cloud: Service, channel: grpc.Channel, edge_stream: FakeEdge
) -> None:
    edge_stream.batch(1, [s("a", 0, t=1.0, rh=2.0), s("b", 0)])
    everything, replayed = subscribe(channel, pb.SubscribeRequest(after_id=0))
    first = replayed.get(timeout=10)
    assert (first.sample.device_id, first.sample.seq) == ("a", 0)
    assert replayed.get(timeout=10).sample.device_id == "b"
    live_call, live = subscribe(channel, pb.SubscribeRequest(devices=["a"], metrics=["rh"]))
    filtered_after, resumed = subscribe(channel, pb.SubscribeRequest(after_id=first.id))
    eventually(lambda: cloud.get_metric("edgewire_cloud_subscribers") == 3)
    edge_stream.batch(2, [s("b", 1), s("a", 1, t=3.0, rh=4.0)])
    event = live.get(timeout=10)
    assert (event.sample.device_id, event.sample.seq) == ("a", 1), "device filter applied"
    assert [m.name for m in event.sample.metrics] == ["rh"], "metric filter applied"
    assert [resumed.get(timeout=10).sample.seq for _ in range(3)] == [0, 1, 1]
    assert replayed.get(timeout=10).sample.seq == 1
    for call in (everything, live_call, filtered_after):
        call.cancel()


def test_standard_health_and_reflection_services(channel: grpc.Channel) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    reply = health.Check(health_pb2.HealthCheckRequest(service="edgewire.v1.Telemetry"))
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
    reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
    answers = reflection.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")])
    )
    names = {svc.name for svc in next(answers).list_services_response.service}
    assert {"edgewire.v1.Telemetry", "grpc.health.v1.Health"} <= names


def test_bad_query_parameters_are_400_with_a_reason(cloud: Service) -> None:
    for query, fragment in [
        ("limit=abc", "limit"),
        ("limit=0", "limit"),
        ("since=yesterday", "since"),
        ("until=2026-01-01T00:00:00", "time zone"),
        ("device=BAD!", "device"),
        ("metric=9x", "metric"),
        ("every=soon", "every"),
        ("every=0s", "every"),
    ]:
        response = httpx.get(f"{cloud.url}/api/readings?{query}", timeout=10)
        assert response.status_code == 400, query
        assert fragment in response.json()["error"]
    ok = httpx.get(f"{cloud.url}/api/readings?since=2026-01-01T00:00:00Z", timeout=10)
    assert ok.status_code == 200
    bad_id = httpx.get(f"{cloud.url}/api/stream", headers={"Last-Event-ID": "x"}, timeout=10)
    assert bad_id.status_code == 400


def test_metrics_are_prometheus_text(cloud: Service, edge_stream: FakeEdge) -> None:
    edge_stream.batch(1, [s("a", 0)])
    text = httpx.get(cloud.url + "/metrics", timeout=10).text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    stored = families["edgewire_cloud_samples_stored"]
    assert [x.value for x in stored.samples if x.name.endswith("_total")] == [1.0]
    assert "edgewire_cloud_edge_streams" in families


def test_the_dashboard_page_is_served(cloud: Service) -> None:
    page = httpx.get(cloud.url + "/", timeout=10)
    assert page.status_code == 200
    assert "edgewire" in page.text
    assert httpx.get(cloud.url + "/app.js", timeout=10).status_code == 200


def test_readings_downsampled_server_side(cloud: Service, edge_stream: FakeEdge) -> None:
    edge_stream.batch(1, [Sample("a", 1, i, TS + i * 10, {"t": float(i)}) for i in range(12)])
    buckets = cloud.get("/api/readings", device="a", metric="t", every="1m")
    assert [(b["start"], b["count"], b["min"], b["mean"], b["max"]) for b in buckets] == [
        (TS, 6, 0.0, 2.5, 5.0),
        (TS + 60, 6, 6.0, 8.5, 11.0),
    ]


def test_retention_deletes_old_samples_in_the_background(tmp_path: Path) -> None:
    # Kept 5 minutes, so the cloud looks every 3 s (a hundredth of that).
    cloud = cloud_service(tmp_path, extra=["--retain", "5m"]).start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{cloud.grpc_port}") as chan:
            stream = FakeEdge(chan)
            stream.send(pb.EdgeMessage(hello=pb.Hello(edge_id="e", software_version="test")))
            now = time.time()
            old = [Sample("r", 1, i, now - 7200 + i, {"t": 1.0}) for i in range(5)]
            new = [Sample("r", 1, 10 + i, now - 60 + i, {"t": 2.0}) for i in range(3)]
            assert stream.batch(1, old + new).stored == 8
            eventually(lambda: len(cloud.get("/api/readings", device="r")) == 3)
            assert [r["seq"] for r in cloud.get("/api/readings", device="r")] == [10, 11, 12]
            stream.close()
        metrics = httpx.get(cloud.url + "/metrics", timeout=10).text
        assert "edgewire_cloud_retention_deleted_total 5.0" in metrics
    finally:
        assert cloud.stop() == 0


def test_the_cloud_runs_on_postgresql(tmp_path: Path) -> None:
    server = PrivatePostgres().start()
    try:
        url = server.create_database("cloud")
        cloud = cloud_service(tmp_path, db=url).start()
        try:
            with grpc.insecure_channel(f"127.0.0.1:{cloud.grpc_port}") as chan:
                stream = FakeEdge(chan)
                stream.send(pb.EdgeMessage(hello=pb.Hello(edge_id="e", software_version="t")))
                assert stream.batch(1, [s("p", 0), s("p", 1)]).stored == 2
                assert stream.batch(2, [s("p", 1)]).duplicates == 1
                stream.close()
            assert [r["seq"] for r in cloud.get("/api/readings", device="p")] == [0, 1]
            assert cloud.get("/api/devices")[0]["samples"] == 2
        finally:
            assert cloud.stop() == 0
    finally:
        server.stop()


def ws_receive(socket: Any, kind: str, timeout_s: float = 10) -> dict[str, Any]:
    """The next message of `kind`, skipping others (status changes)."""
    deadline = time.monotonic() + timeout_s
    while True:
        message: dict[str, Any] = json.loads(socket.recv(max(0.1, deadline - time.monotonic())))
        if kind in message:
            return message
        if time.monotonic() > deadline:
            raise AssertionError(f"no {kind} message within {timeout_s} s")


def ws_samples(socket: Any, count: int) -> list[dict[str, Any]]:
    """The next `count` samples, however the cloud grouped them in messages."""
    got: list[dict[str, Any]] = []
    while len(got) < count:
        got.extend(ws_receive(socket, "samples")["samples"])
    assert len(got) == count, got
    return got


def test_websocket_subscribe_resume_refilter_and_refuse(
    cloud: Service, edge_stream: FakeEdge
) -> None:
    edge_stream.batch(1, [s("a", 0), s("b", 0), s("a", 1)])
    url = f"ws://127.0.0.1:{cloud.http_port}/api/ws"
    with ws_connect(url) as socket:
        socket.send(json.dumps({"subscribe": {"devices": ["a"], "after": 0}}))
        assert ws_receive(socket, "subscribed")["subscribed"] == {"devices": ["a"], "after": 0}
        replayed = ws_samples(socket, 2)
        assert [(x["device"], x["seq"]) for x in replayed] == [("a", 0), ("a", 1)]
        edge_stream.batch(2, [s("b", 1), s("a", 2)])
        assert ws_samples(socket, 1)[0]["seq"] == 2, "live, filtered to a"
        # A new subscription replaces the filter and resumes where asked.
        socket.send(json.dumps({"subscribe": {"devices": ["b"], "after": replayed[-1]["id"]}}))
        ws_receive(socket, "subscribed")
        assert [x["seq"] for x in ws_samples(socket, 1)] == [1]
        for bad, reason in [
            ("not json", "not JSON"),
            ("[1]", "object"),
            ('{"subscribe": {"devices": ["BAD!"]}}', "device id"),
            ('{"subscribe": {"after": -1}}', "after"),
            ('{"subscribe": {"devices": "a"}}', "list"),
            ('{"fly": true}', "expected subscribe"),
            ('{"cmd": {"reboot": true}}', "`device`"),
            ('{"cmd": {"reboot": true}, "device": "a", "ttl": 5}', "ttl"),
            ('{"cmd": {"id": "c1", "reboot": true}, "device": "a"}', "leave `id` out"),
        ]:
            socket.send(bad)
            assert reason in ws_receive(socket, "error")["error"], bad
        socket.send(json.dumps({"unsubscribe": True}))
        ws_receive(socket, "unsubscribed")
        edge_stream.batch(3, [s("b", 2)])
        socket.send(json.dumps({"subscribe": {"devices": None, "after": None}}))
        ws_receive(socket, "subscribed")
        edge_stream.batch(4, [s("b", 3)])
        live = ws_samples(socket, 1)[0]
        assert (live["device"], live["seq"]) == ("b", 3), "after unsubscribing, nothing queued up"
    metrics = httpx.get(cloud.url + "/metrics", timeout=10).text
    assert 'edgewire_cloud_bad_requests_total{endpoint="ws"} 9.0' in metrics


def test_a_websocket_frame_too_large_is_refused(cloud: Service) -> None:
    with ws_connect(f"ws://127.0.0.1:{cloud.http_port}/api/ws") as socket:
        socket.send("x" * (128 * 1024))
        with pytest.raises(ConnectionClosed) as closed:
            socket.recv(10)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1009, "message too big"


def test_edgewire_tail_prints_the_feed_and_resumes_after_a_cloud_restart(
    cloud: Service, edge_stream: FakeEdge
) -> None:
    tail = subprocess.Popen(
        [*edgewire_argv("tail", "--cloud", cloud.url, "--device", "t")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        time.sleep(1.5)  # connected: the feed is live-only without a Last-Event-ID
        edge_stream.batch(1, [s("t", 0, temp_c=21.5), s("other", 0), s("t", 1, temp_c=22.0)])
        assert tail.stdout is not None
        first = [tail.stdout.readline() for _ in range(2)]
        assert "t boot 1 seq 0  temp_c=21.5" in first[0]
        assert first[1].startswith("2027-01-15T08:00:01.000Z t boot 1 seq 1")
        edge_stream.close()
        assert cloud.stop() == 0
        cloud.start()  # the same database: tail resumes after seq 1
        with grpc.insecure_channel(f"127.0.0.1:{cloud.grpc_port}") as chan:
            again = FakeEdge(chan)
            again.send(pb.EdgeMessage(hello=pb.Hello(edge_id="e", software_version="t")))
            again.batch(1, [s("t", 2, temp_c=23.0)])
            assert "seq 2  temp_c=23.0" in tail.stdout.readline()
            again.close()
    finally:
        tail.send_signal(signal.SIGINT)
        _, errors = tail.communicate(timeout=10)
    assert tail.returncode == 0, "Ctrl-C ends it quietly"
    assert "reconnecting" in errors


def test_tail_formats_samples_statuses_and_commands() -> None:
    line = format_sample(
        {"device": "g-1", "boot": 2, "seq": 7, "ts": 1_800_000_000.25, "ts_from_edge": True,
         "m": {"rh": 40.1, "temp_c": 21.5}}
    )  # fmt: skip
    assert line == "2027-01-15T08:00:00.250Z g-1 boot 2 seq 7  rh=40.1 temp_c=21.5 (edge time)"
    assert format_status({"device_id": "g-1", "status": "offline", "at": 1_800_000_000}) == (
        "2027-01-15T08:00:00.000Z g-1 is offline"
    )
    change = {"device_id": "g-1", "id": "c1", "state": "failed", "at": 1_800_000_000,
              "command": {"set": {"interval_s": -1}}, "error": "interval_s"}  # fmt: skip
    assert format_command(change) == (
        '2027-01-15T08:00:00.000Z g-1 command c1 {"set":{"interval_s":-1}} failed (interval_s)'
    )
    events = list(parse_sse(["id: 4", "event: sample", "data: {}", "", ": ping", "data: x", ""]))
    assert events == [{"id": "4", "event": "sample", "data": "{}"}, {"data": "x"}]
