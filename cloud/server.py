"""`edgewire cloud`: start-up, serving, and shutdown in order.

Start-up opens storage and the bus, then the gRPC server (Ingest, Subscribe,
health, reflection; mTLS with tls_cert, tls_key and tls_client_ca, see
cloud/tls.py and cloud/edge_trust.py) and the HTTP server. Shutdown reverses it: health turns
NOT_SERVING, the gRPC server stops taking streams and lets in-flight batches
finish, the bus ends the live feeds, and storage closes last.
"""

import asyncio
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from cloud.api import create_app
from cloud.bus import open_bus
from cloud.config import CloudSettings
from cloud.downlink import Downlink
from cloud.edge_trust import EdgeGate
from cloud.ingest import Committer, TelemetryService
from cloud.limits import REFUSALS
from cloud.retention import keep_only
from cloud.storage import open_storage
from cloud.storage.threads import StorageThreads
from cloud.tls import ServerTls, read_server_tls, server_credentials
from cloud.tokens import TokenFile
from edgewire.errors import EdgewireError
from edgewire.logs import get_logger
from edgewire.urls import redact_url
from edgewire.v1 import edgewire_pb2 as pb
from edgewire.v1 import edgewire_pb2_grpc as pb_grpc
from edgewire.web import HttpServer

log = get_logger("cloud.server")

# gRPC messages larger than this are refused by the server.
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
MAX_STREAMS_PER_CONNECTION = 100
SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Telemetry"].full_name


def grpc_server_options() -> list[tuple[str, int]]:
    return [
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        # Streams one connection may multiplex (an edge needs one, a feed
        # client a few); without it gRPC allows 2^31.
        ("grpc.max_concurrent_streams", MAX_STREAMS_PER_CONNECTION),
        # Edges ping every few seconds to notice dead links; allow it.
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_ping_interval_without_data_ms", 1000),
        ("grpc.http2.max_ping_strikes", 0),
    ]


async def serve_cloud(settings: CloudSettings, stop: asyncio.Event) -> None:
    storage = StorageThreads(open_storage(settings.db))
    bus = open_bus(settings.bus, storage)
    stopping = asyncio.Event()
    try:
        await bus.start()
        server = grpc.aio.server(options=grpc_server_options())
        committer = Committer(storage, bus)
        downlink = Downlink(storage, bus)
        tls = _server_tls(settings)
        gate = EdgeGate(
            None if tls is None else tls.client_ca,
            None if tls is None else tls.crl,
            settings.edge_devices,
        )
        service = TelemetryService(
            committer, storage, bus, downlink, gate, settings.grpc_subscriptions_per_ip
        )
        pb_grpc.add_TelemetryServicer_to_server(service, server)  # type: ignore[no-untyped-call]
        health_servicer = health.aio.HealthServicer()  # type: ignore[attr-defined]  # public alias the stubs lack
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
        reflection.enable_server_reflection(
            [SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME], server
        )
        address = f"{settings.host}:{settings.grpc_port}"
        try:
            port = _listen(server, address, tls)
        except RuntimeError as exc:
            raise EdgewireError(f"cannot listen for gRPC on {address}: {exc}") from None
        await server.start()
        for name in ("", SERVICE_NAME):
            await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
        app = create_app(
            storage, bus, downlink, stopping, _tokens(settings), settings.metrics_token_required,
            settings.allowed_origins,
        )  # fmt: skip
        async with HttpServer(
            app,
            settings.host,
            settings.http_port,
            ws_deflate=settings.ws_deflate,
            connections_per_ip=settings.http_connections_per_ip,
            on_refused=REFUSALS.refused,
        ) as http:
            log.info(
                "cloud ready",
                grpc_port=port,
                grpc_tls="mtls" if tls is not None else "off",
                http_port=http.port,
                db=redact_url(settings.db),
                bus=redact_url(settings.bus),
            )
            commands = asyncio.create_task(downlink.run(stopping), name="downlink")
            retention = None
            if settings.retain_s is not None:
                retention = asyncio.create_task(keep_only(storage, settings.retain_s, stopping))
            await stop.wait()
            stopping.set()
            if retention is not None:
                await retention
            await commands
            await health_servicer.enter_graceful_shutdown()
            await server.stop(grace=min(5.0, settings.shutdown_grace_s / 2))
            await bus.close()
    finally:
        storage.close()


def _server_tls(settings: CloudSettings) -> ServerTls | None:
    """The gRPC port's TLS files (checked when the settings loaded; read
    again here, as they are used)."""
    try:
        tls = read_server_tls(
            settings.tls_cert, settings.tls_key, settings.tls_client_ca, settings.tls_crl
        )
    except ValueError as exc:  # a file changed since the settings loaded
        raise EdgewireError(str(exc)) from None
    if tls is None:
        log.warning(
            "the edge link is unauthenticated: gRPC without TLS, so any client can"
            " send as any edge id (set tls_cert, tls_key and tls_client_ca for mTLS)"
        )
    return tls


def _tokens(settings: CloudSettings) -> TokenFile | None:
    if settings.tokens_file is None:
        log.warning(
            "the HTTP API is unauthenticated: anyone who reaches the HTTP port can read"
            " every sample and send commands to boards (set tokens_file, see"
            " edgewire cloud add-token)"
        )
        return None
    path = Path(settings.tokens_file)
    tokens = TokenFile(path)  # checked as the settings loaded (cloud/config.py)
    if len(tokens) == 0:
        log.warning(
            "the tokens file holds no token yet: every API request is refused until"
            " edgewire cloud add-token adds one",
            path=str(path),
        )
    return tokens


def _listen(server: grpc.aio.Server, address: str, tls: ServerTls | None) -> int:
    if tls is None:
        return server.add_insecure_port(address)
    return server.add_secure_port(address, server_credentials(tls))
