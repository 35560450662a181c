"""`edgewire edge`: start-up, the main loop, and shutdown in order.

Start-up opens the buffer (moving a damaged one aside), starts the cloud
stream and the HTTP port, then connects to the broker. Shutdown stops intake
first and commits and acks what already arrived, then lets the cloud stream
collect its last acknowledgements, and closes the buffer last: whatever was
not acknowledged by then is still in the buffer (or still queued at the
broker) for the next start.
"""

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from prometheus_client import REGISTRY
from prometheus_client.registry import Collector

from edge import metrics
from edge.buffer import Caps, open_buffer
from edge.config import EdgeSettings
from edge.downlink import Answer
from edge.http import HealthServer
from edge.intake import MqttIntake
from edge.memory import Trimmer
from edge.metrics import LastSeenCollector, LocalDeviceCollector, RuleCollector
from edge.pipeline import Pipeline
from edge.reload import reloaded
from edge.rules import parse_rules
from edge.stored import StoredTracker
from edge.uplink import Uplink, channel_credentials
from edge.window import Limits, drain_eta_s
from edgewire import contract
from edgewire.aio import first_of
from edgewire.logs import get_logger
from edgewire.notify import Notifier

if TYPE_CHECKING:
    from edge.gpio.local import LocalDevice

log = get_logger("edge.agent")

TICK_S = 0.5
# Oldest buffered sample older than this: the status LED blinks.
BEHIND_S = 5.0


async def serve_edge(
    settings: EdgeSettings,
    stop: asyncio.Event,
    reload: asyncio.Event | None = None,
    reread: Callable[[], EdgeSettings] | None = None,
) -> None:
    """Run the edge until `stop`; on `reload`, apply `reread()` settings."""
    with Notifier() as notifier:
        await _serve(settings, stop, reload or asyncio.Event(), reread, notifier)


async def _serve(
    settings: EdgeSettings,
    stop: asyncio.Event,
    reload: asyncio.Event,
    reread: Callable[[], EdgeSettings] | None,
    notifier: Notifier,
) -> None:
    loop = asyncio.get_running_loop()
    caps = Caps(settings.buffer_max_records, settings.buffer_max_bytes, settings.dead_letter_max)
    buffer, quarantined = open_buffer(settings.data_path, caps)
    if quarantined is not None:
        metrics.BUFFER_QUARANTINED.inc()
        log.error(
            "the buffer was damaged; moved aside, starting a fresh one", moved_to=str(quarantined)
        )
    uplink: Uplink | None = None

    def committed(first_id: int, records: list[bytes]) -> None:
        if uplink is not None:
            uplink.offer(first_id, records)

    def status(device_id: str, value: str, at: float) -> None:
        if uplink is not None:
            loop.call_soon_threadsafe(uplink.status_changed, device_id, value, at)

    tracker = StoredTracker()
    tracker.restore(buffer.marks())

    def answer(device_id: str, said: Answer) -> None:
        if uplink is not None:
            loop.call_soon_threadsafe(uplink.command_answered, device_id, said)

    rules = parse_rules(settings.rules)  # checked when the settings loaded
    rules.restore_state(buffer.rule_state())
    pipeline = Pipeline(
        buffer,
        settings.buffer_full_policy,
        tracker,
        on_committed=committed,
        on_status=status,
        on_answer=answer,
        rules=rules,
    )
    # /metrics figures read at each scrape rather than kept up per sample.
    collectors: list[Collector] = [
        RuleCollector(lambda: [] if pipeline.rules is None else pipeline.rules.counters()),
        LastSeenCollector(pipeline.last_seen),
    ]
    limits = Limits(
        max_batches=settings.window_batches,
        max_samples=settings.batch_max_samples,
        max_bytes=settings.batch_max_bytes,
        linger_s=settings.batch_linger_ms / 1000,
    )
    uplink = Uplink(
        settings.cloud_endpoint,
        settings.edge_id,
        pipeline,
        limits,
        gzip=settings.cloud_compression == "gzip",
        reconnect_max_s=settings.reconnect_max_s,
        credentials=(
            channel_credentials(settings.cloud_ca, settings.cloud_cert, settings.cloud_key)
            if settings.cloud_endpoint.tls
            else None
        ),
    )
    intake = MqttIntake(
        settings.mqtt_endpoint,
        f"edgewire-edge-{settings.edge_id}",
        pipeline.handle,
        pipeline.room,
        ca_file=settings.mqtt_ca,
    )
    pipeline.attach(intake)
    uplink.publish = intake.publish

    def published(mid: int) -> None:
        loop.call_soon_threadsafe(uplink.command_published, mid)

    intake.on_published = published
    local: LocalDevice | None = None
    if settings.gpio is not None:
        from edge.gpio import local as pi  # only on a Pi that has them

        def submit(device_id: str, payload: bytes) -> None:
            # The Pi's own readings take the boards' path, minus the broker.
            pipeline.handle(device_id, contract.TELEMETRY, payload, 0, 0)

        def pressed() -> None:
            log.info("button pressed: sending the backlog now")
            uplink.kick()

        local = pi.LocalDevice(settings.gpio, settings.data_path, submit, pressed)
        collectors.append(LocalDeviceCollector(local.stats))
    for collector in collectors:
        REGISTRY.register(collector)
    report: dict[str, Any] = {}
    trimmer = Trimmer()

    def probe() -> tuple[bool, dict[str, Any]]:
        down_since = uplink.down_since
        down_s = 0.0 if down_since is None else time.monotonic() - down_since
        cut_off = down_s >= settings.unhealthy_after_s
        status = "stopping" if stop.is_set() else "cloud unreachable" if cut_off else "ok"
        detail = {
            "status": status,
            "mqtt": "connected" if intake.connected else "disconnected",
            "cloud": "connected" if uplink.connected else "disconnected",
            "cloud_down_s": round(down_s, 1),
            **report,
        }
        if quarantined is not None:
            detail["buffer_moved_aside"] = str(quarantined)
        return status == "ok", detail

    try:
        with HealthServer(settings.http_host, settings.http_port, probe) as http:
            uplink_task = asyncio.create_task(uplink.run(stop), name="uplink")
            local_task = None
            if local is not None:
                local_task = asyncio.create_task(local.run(stop), name="local-device")
            intake.start()
            log.info(
                "edge ready",
                edge=settings.edge_id,
                http_port=http.port,
                data_dir=settings.data_dir,
            )
            notifier.ready()
            while not stop.is_set():
                report.update(await _tick(pipeline, uplink))
                trimmer.maybe(time.monotonic())
                if local is not None:
                    # Blinking means a backlog waits, not the few records in flight.
                    behind = not uplink.connected or report["oldest_age_s"] > BEHIND_S
                    local.set_link_state(uplink.connected, behind)
                # From the main loop, after the buffer thread answered: a
                # wedged loop or buffer stops the pings and systemd restarts us.
                notifier.watchdog()
                notifier.status(status_line(intake.connected, uplink.connected, report))
                if reload.is_set():
                    reload.clear()
                    notifier.reloading()
                    settings = reloaded(settings, reread, pipeline)
                    notifier.ready()
                await first_of(stop, reload, timeout=TICK_S)
            notifier.stopping()
            # Ack what already arrived, then leave; what comes after the last
            # flush stays unacknowledged and the broker sends it again.
            await pipeline.flush()
            await asyncio.to_thread(intake.stop)
            await pipeline.flush()
            uplink.wake()
            await uplink_task
            if local_task is not None:
                await local_task
    finally:
        for collector in collectors:
            REGISTRY.unregister(collector)
        pipeline.close()


def status_line(mqtt_up: bool, cloud_up: bool, report: dict[str, Any]) -> str:
    """One line for `systemctl status`: links, backlog, delivery rate."""
    return (
        f"mqtt {'up' if mqtt_up else 'down'}, cloud {'streaming' if cloud_up else 'down'}, "
        f"{report.get('buffered', 0)} buffered, {report.get('delivery_rate', 0.0):g}/s delivered"
    )


async def _tick(pipeline: Pipeline, uplink: Uplink) -> dict[str, Any]:
    """Housekeeping every TICK_S: watermarks, gauges, the health report."""
    await pipeline.tick()
    uplink.expire_commands(time.time())
    stats = await pipeline.stats()
    oldest = await pipeline.oldest_ts()
    uplink.delivery_rate.add(0, time.monotonic())
    rate = uplink.delivery_rate.per_second
    eta = drain_eta_s(stats.records, rate)
    age = 0.0 if oldest is None else max(0.0, time.time() - oldest)
    uplink.stats_changed(stats.records, age, rate)
    metrics.BUFFER_RECORDS.set(stats.records)
    metrics.BUFFER_BYTES.set(stats.bytes)
    metrics.BUFFER_OLDEST_AGE.set(age)
    metrics.BACKLOG_DRAIN_RATE.set(rate)
    metrics.BACKLOG_DRAIN_ETA.set(-1 if eta is None else eta)
    return {
        "buffered": stats.records,
        "buffered_bytes": stats.bytes,
        "oldest_age_s": round(age, 3),
        "delivery_rate": round(rate, 1),
        "drain_eta_s": None if eta is None else round(eta, 1),
        "dead_letters": stats.dead_letters,
        "backpressure": pipeline.held,
    }
