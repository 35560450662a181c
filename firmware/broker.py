"""A paho client for the flash tools (`--wait`, `--update`): this computer
talking to a board's broker, on paho's own thread."""

import os
from collections.abc import Callable
from typing import Any

from edgewire.urls import Endpoint
from firmware.rawrepl_core import FlashError


def start_client(
    broker: Endpoint,
    purpose: str,
    on_connect: Callable[..., None],
    on_subscribe: Callable[..., None],
    on_message: Callable[..., None],
    ca: bytes | None = None,
) -> Any:
    """Connect (MQTT 3.1.1, the broker URL's credentials; mqtts:// checks the
    broker's certificate, host name included, against `ca`, a CA certificate
    in DER, or else the system's CAs) and start paho's loop;
    FlashError when the broker cannot be reached."""
    import ssl

    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=f"edgewire-{purpose}-{os.getpid()}",
        protocol=MQTTProtocolVersion.MQTTv311,
    )
    if broker.username is not None:
        client.username_pw_set(broker.username, broker.password)
    if broker.tls:
        client.tls_set_context(ssl.create_default_context(cadata=ca))
    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    try:
        client.connect(broker.host, broker.port)
    except OSError as exc:  # ssl.SSLError included: a certificate that does not check
        raise FlashError(f"cannot reach the broker {broker.redacted()}: {exc}") from None
    client.loop_start()
    return client
