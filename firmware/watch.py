"""`edgewire flash --wait`: watch the broker for a flashed board's first words."""

import re
import time
from typing import Any

from edgewire import contract
from edgewire.urls import Endpoint
from firmware.broker import start_client
from firmware.rawrepl_core import FlashError


class BoardWatcher:
    """Subscribes to a board's status and telemetry (paho, on its own thread)."""

    def __init__(self, broker: Endpoint, device_id: str, ca: bytes | None = None) -> None:
        import threading

        self.broker = broker
        self.ca = ca  # DER, for an mqtts:// broker (None: the system's CAs)
        self.device_id = device_id
        self.online = threading.Event()
        self.sampled = threading.Event()
        self.subscribed = threading.Event()
        self.sample = b""
        self.refused = ""
        self._client: Any = None

    def __enter__(self) -> "BoardWatcher":
        self._client = start_client(
            self.broker,
            "flash",
            on_connect=self._on_connect,
            on_subscribe=lambda *_: self.subscribed.set(),
            on_message=self._on_message,
            ca=self.ca,
        )
        if not self.subscribed.wait(10):
            self.__exit__()
            why = f": {self.refused}" if self.refused else ""
            raise FlashError(f"could not subscribe at the broker {self.broker.redacted()}{why}")
        return self

    def __exit__(self, *exc: object) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            self.refused = str(reason)  # e.g. "Not authorized"
            return
        kinds = (contract.STATUS, contract.TELEMETRY)
        client.subscribe([(contract.topic(self.device_id, kind), 1) for kind in kinds])

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        if message.retain:
            return  # from before this flash: says nothing about the new program
        kind = message.topic.rsplit("/", 1)[-1]
        if kind == contract.STATUS and message.payload == b"online":
            self.online.set()
        elif kind == contract.TELEMETRY and not self.sampled.is_set():
            self.sample = bytes(message.payload)
            self.sampled.set()

    def wait(self, timeout_s: float) -> bytes:
        deadline = time.monotonic() + timeout_s
        for event in (self.online, self.sampled):
            if not event.wait(max(0.0, deadline - time.monotonic())):
                heard = "online, but no sample" if self.online.is_set() else "nothing"
                raise FlashError(
                    f"heard {heard} from {self.device_id} on {self.broker.redacted()} within "
                    f"{timeout_s:g} s: check the Wi-Fi name and password, and that the "
                    f"board can reach {self.broker.host}:{self.broker.port}"
                )
        return self.sample


def hide_password(message: str) -> str:
    """A settings error about the Wi-Fi password, without its value."""
    return re.sub(
        r"setting 'wifi_password' has value .*? \(from", "setting 'wifi_password' (from", message
    )
