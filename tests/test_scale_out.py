"""The cloud scaled out: two `edgewire cloud` processes (each an ingest and a
feed) sharing one PostgreSQL and one RabbitMQ, both private to this test.
Samples sent to either ingest reach the live subscribers of both feeds,
once each and in event-id order."""

import asyncio
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import aio_pika
import grpc
import httpx
import pytest

from edgewire.postgres import PrivatePostgres
from edgewire.rabbitmq import PrivateRabbitMQ
from edgewire.sample import Sample
from edgewire.v1 import edgewire_pb2 as pb
from tests.helpers import Service, SseClient, cloud_service, eventually
from tests.test_cloud import TS, FakeEdge


@pytest.fixture
def shared(tmp_path: Path) -> Iterator[tuple[str, str]]:
    postgres = PrivatePostgres().start()
    rabbit = PrivateRabbitMQ()
    try:
        rabbit.start()
        yield postgres.create_database("cloud"), rabbit.url
    finally:
        rabbit.stop()
        postgres.stop()


@pytest.fixture
def clouds(tmp_path: Path, shared: tuple[str, str]) -> Iterator[list[Service]]:
    db, bus = shared
    started: list[Service] = []
    try:
        for name in ("one", "two"):
            folder = tmp_path / name
            folder.mkdir()
            started.append(cloud_service(folder, db=db, extra=["--bus", bus]).start())
        yield started
    finally:
        for cloud in started:
            assert cloud.stop() == 0, "SIGTERM stops a scaled-out cloud cleanly"


def send(cloud: Service, device: str, batches: int, per_batch: int) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{cloud.grpc_port}") as channel:
        edge = FakeEdge(channel)
        edge.send(pb.EdgeMessage(hello=pb.Hello(edge_id=f"edge-{device}", software_version="t")))
        for b in range(batches):
            samples = [
                Sample(device, 1, seq, TS + seq, {"t": float(seq)})
                for seq in range(b * per_batch, (b + 1) * per_batch)
            ]
            assert edge.batch(b + 1, samples).stored == per_batch
        edge.close()


def test_samples_sent_to_either_ingest_reach_subscribers_of_both_feeds_once(
    clouds: list[Service],
) -> None:
    one, two = clouds
    with (
        SseClient(one.url + "/api/stream") as on_one,
        SseClient(two.url + "/api/stream") as on_two,
        SseClient(two.url + "/api/stream?device=dev-b") as only_b_on_two,
    ):
        # Two edges at once, one to each ingest process.
        writers = [
            threading.Thread(target=send, args=(one, "dev-a", 10, 20)),
            threading.Thread(target=send, args=(two, "dev-b", 10, 20)),
        ]
        for writer in writers:
            writer.start()
        for writer in writers:
            writer.join(60)
        eventually(lambda: len(on_one.samples()) >= 400, show=on_one.samples)
        eventually(lambda: len(on_two.samples()) >= 400, show=on_two.samples)
        eventually(lambda: len(only_b_on_two.samples()) >= 200)
    for subscriber in (on_one, on_two):
        seen = subscriber.samples()
        keys = [(x["device"], x["seq"]) for x in seen]
        assert len(keys) == 400 == len(set(keys)), "every sample once"
        assert sorted(keys) == sorted(
            [("dev-a", i) for i in range(200)] + [("dev-b", i) for i in range(200)]
        )
        ids = [x["id"] for x in seen]
        assert ids == sorted(ids), "in event-id (commit) order"
    assert {x["device"] for x in only_b_on_two.samples()} == {"dev-b"}
    assert on_one.samples() == on_two.samples(), "both feeds tell the same story"


def test_a_bus_message_that_cannot_be_read_is_counted_and_ignored(
    clouds: list[Service], shared: tuple[str, str]
) -> None:
    async def publish_junk() -> None:
        connection = await aio_pika.connect(shared[1])
        async with connection:
            channel = await connection.channel()
            exchange = await channel.get_exchange("edgewire")
            for body in (b"not json", b'{"first_id": "x"}', b"[]"):
                await exchange.publish(aio_pika.Message(body), routing_key="samples.dev-x")

    def all_counted() -> bool:
        return all(
            "edgewire_cloud_bus_messages_ignored_total 3.0"
            in httpx.get(cloud.url + "/metrics", timeout=10).text
            for cloud in clouds
        )

    asyncio.run(publish_junk())
    eventually(all_counted)
    # Still serving: a sample sent now reaches the other process's feed.
    with SseClient(clouds[1].url + "/api/stream") as live:
        send(clouds[0], "dev-c", 1, 1)
        eventually(lambda: len(live.samples()) == 1)


def test_a_command_sent_to_one_process_reaches_an_edge_streaming_to_the_other(
    clouds: list[Service],
) -> None:
    one, two = clouds
    with grpc.insecure_channel(f"127.0.0.1:{two.grpc_port}") as channel:
        edge = FakeEdge(channel)
        edge.send(pb.EdgeMessage(hello=pb.Hello(edge_id="edge-x", software_version="t")))
        status = pb.DeviceStatus(device_id="dev-x", status="online", at=TS)
        edge.send(pb.EdgeMessage(status=status))
        eventually(lambda: any(d["id"] == "dev-x" for d in one.get("/api/devices")))
        with SseClient(one.url + "/api/stream?device=dev-x") as on_one:
            answer = httpx.post(
                one.url + "/api/devices/dev-x/cmd", json={"reboot": True}, timeout=10
            )
            assert answer.status_code == 202, answer.text
            reply = edge.replies.get(timeout=15)
            assert reply.WhichOneof("kind") == "command"
            assert reply.command.id == answer.json()["id"]
            assert reply.command.payload == (
                b'{"id":"' + reply.command.id.encode() + b'","reboot":true}'
            )
            said = pb.CommandUpdate(
                id=reply.command.id, device_id="dev-x", state="acked", at=TS + 1
            )
            edge.send(pb.EdgeMessage(command_update=said))

            def states() -> list[str]:
                return [
                    json.loads(e["data"])["state"]
                    for e in list(on_one.events)
                    if e.get("event") == "command"
                ]

            eventually(lambda: states() == ["queued", "acked"], show=states)
        edge.close()
    rows = one.get("/api/devices/dev-x/cmd")
    assert [(r["id"], r["state"]) for r in rows] == [(reply.command.id, "acked")]


def test_the_exchange_is_keyed_by_device_and_metric(
    clouds: list[Service], shared: tuple[str, str]
) -> None:
    """Anyone may bind to one series: a queue bound to `samples.*.rh` hears
    of the humidity of every board and of nothing else."""

    async def listen() -> list[str]:
        connection = await aio_pika.connect(shared[1])
        async with connection:
            channel = await connection.channel()
            exchange = await channel.get_exchange("edgewire")
            queue = await channel.declare_queue(exclusive=True)
            await queue.bind(exchange, "samples.*.rh")
            await asyncio.to_thread(send_mixed, clouds[0])
            keys: list[str] = []
            settled_at = None  # once both expected keys came: a moment for strays
            while settled_at is None or asyncio.get_running_loop().time() < settled_at:
                try:
                    message = await queue.get(timeout=5, fail=True)
                except aio_pika.exceptions.QueueEmpty:
                    await asyncio.sleep(0.1)
                    continue
                await message.ack()
                keys.append(message.routing_key or "")
                if len(keys) >= 2 and settled_at is None:
                    settled_at = asyncio.get_running_loop().time() + 1.0
            return keys

    def send_mixed(cloud: Service) -> None:
        with grpc.insecure_channel(f"127.0.0.1:{cloud.grpc_port}") as channel:
            edge = FakeEdge(channel)
            edge.send(pb.EdgeMessage(hello=pb.Hello(edge_id="edge-m", software_version="t")))
            samples = [
                Sample("dev-t", 1, 0, TS, {"t": 1.0}),
                Sample("dev-h", 1, 0, TS, {"rh": 40.0, "t": 2.0}),
                Sample("dev-h2", 1, 0, TS, {"rh": 41.0}),
            ]
            assert edge.batch(1, samples).stored == 3
            edge.close()

    keys = asyncio.run(asyncio.wait_for(listen(), 30))
    assert sorted(keys) == ["samples.dev-h.rh", "samples.dev-h2.rh"]
