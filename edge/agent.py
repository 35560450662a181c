"""`edgewire edge`: start-up, the main loop, and shutdown in order.

Start-up opens the buffer, starts the cloud stream and the HTTP port, then
connects to the broker. Shutdown stops intake first and commits and acks what
already arrived, then lets the cloud stream collect its last acknowledgements,
and closes the buffer last: whatever was not acknowledged by then is still in
the buffer (or still queued at the broker) for the next start.
"""

import asyncio
import contextlib
import time
from typing import Any

from edge import metrics
from edge.buffer import open_buffer
from edge.config import EdgeSettings
from edge.http import create_app
from edge.intake import MqttIntake
from edge.pipeline import Pipeline
from edge.stored import StoredTracker
from edge.uplink import Uplink
from edgewire.logs import get_logger
from edgewire.web import HttpServer

log = get_logger("edge.agent")

TICK_S = 0.5


async def serve_edge(settings: EdgeSettings, stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    buffer = open_buffer(settings.data_dir, settings.buffer_max_records, settings.dead_letter_max)
    uplink: Uplink | None = None

    def committed() -> None:
        if uplink is not None:
            loop.call_soon_threadsafe(uplink.wake)

    def status(device_id: str, value: str, at: float) -> None:
        if uplink is not None:
            loop.call_soon_threadsafe(uplink.status_changed, device_id, value, at)

    pipeline = Pipeline(buffer, StoredTracker(), on_committed=committed, on_status=status)
    uplink = Uplink(
        settings.cloud_endpoint,
        settings.edge_id,
        pipeline,
        settings.batch_max_samples,
        settings.window_batches,
    )
    intake = MqttIntake(
        settings.mqtt_endpoint, f"edgewire-edge-{settings.edge_id}", pipeline.handle
    )
    pipeline.attach(intake)

    async def probe() -> tuple[bool, dict[str, Any]]:
        stats = await pipeline.stats()
        detail = {
            "status": "stopping" if stop.is_set() else "ok",
            "mqtt": "connected" if intake.connected else "disconnected",
            "cloud": "connected" if uplink.connected else "disconnected",
            "buffered": stats.records,
            "dead_letters": stats.dead_letters,
        }
        return not stop.is_set(), detail

    try:
        async with HttpServer(create_app(probe), settings.http_host, settings.http_port) as http:
            uplink_task = asyncio.create_task(uplink.run(stop), name="uplink")
            intake.start()
            log.info(
                "edge ready",
                edge=settings.edge_id,
                http_port=http.port,
                data_dir=str(settings.data_dir),
            )
            while not stop.is_set():
                await _tick(pipeline)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), TICK_S)
            # Ack what already arrived, then leave; what comes after the last
            # flush stays unacknowledged and the broker sends it again.
            await pipeline.flush()
            await asyncio.to_thread(intake.stop)
            await pipeline.flush()
            uplink.wake()
            await uplink_task
    finally:
        pipeline.close()


async def _tick(pipeline: Pipeline) -> None:
    await pipeline.tick()
    stats = await pipeline.stats()
    metrics.BUFFER_RECORDS.set(stats.records)
    age = 0.0 if stats.oldest_ts is None else max(0.0, time.time() - stats.oldest_ts)
    metrics.BUFFER_OLDEST_AGE.set(age)
