from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Metric(_message.Message):
    __slots__ = ("name", "number", "flag")
    NAME_FIELD_NUMBER: _ClassVar[int]
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    FLAG_FIELD_NUMBER: _ClassVar[int]
    name: str
    number: float
    flag: bool
    def __init__(self, name: _Optional[str] = ..., number: _Optional[float] = ..., flag: _Optional[bool] = ...) -> None: ...

class Sample(_message.Message):
    __slots__ = ("device_id", "boot", "seq", "ts", "ts_from_edge", "metrics")
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    BOOT_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    TS_FIELD_NUMBER: _ClassVar[int]
    TS_FROM_EDGE_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    device_id: str
    boot: int
    seq: int
    ts: float
    ts_from_edge: bool
    metrics: _containers.RepeatedCompositeFieldContainer[Metric]
    def __init__(self, device_id: _Optional[str] = ..., boot: _Optional[int] = ..., seq: _Optional[int] = ..., ts: _Optional[float] = ..., ts_from_edge: _Optional[bool] = ..., metrics: _Optional[_Iterable[_Union[Metric, _Mapping]]] = ...) -> None: ...

class Hello(_message.Message):
    __slots__ = ("edge_id", "software_version")
    EDGE_ID_FIELD_NUMBER: _ClassVar[int]
    SOFTWARE_VERSION_FIELD_NUMBER: _ClassVar[int]
    edge_id: str
    software_version: str
    def __init__(self, edge_id: _Optional[str] = ..., software_version: _Optional[str] = ...) -> None: ...

class Batch(_message.Message):
    __slots__ = ("batch_id", "samples")
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    batch_id: int
    samples: _containers.RepeatedCompositeFieldContainer[Sample]
    def __init__(self, batch_id: _Optional[int] = ..., samples: _Optional[_Iterable[_Union[Sample, _Mapping]]] = ...) -> None: ...

class DeviceStatus(_message.Message):
    __slots__ = ("device_id", "status", "at")
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    device_id: str
    status: str
    at: float
    def __init__(self, device_id: _Optional[str] = ..., status: _Optional[str] = ..., at: _Optional[float] = ...) -> None: ...

class EdgeStats(_message.Message):
    __slots__ = ("at", "buffered", "oldest_age_s", "delivery_rate")
    AT_FIELD_NUMBER: _ClassVar[int]
    BUFFERED_FIELD_NUMBER: _ClassVar[int]
    OLDEST_AGE_S_FIELD_NUMBER: _ClassVar[int]
    DELIVERY_RATE_FIELD_NUMBER: _ClassVar[int]
    at: float
    buffered: int
    oldest_age_s: float
    delivery_rate: float
    def __init__(self, at: _Optional[float] = ..., buffered: _Optional[int] = ..., oldest_age_s: _Optional[float] = ..., delivery_rate: _Optional[float] = ...) -> None: ...

class CommandUpdate(_message.Message):
    __slots__ = ("id", "device_id", "state", "error", "at")
    ID_FIELD_NUMBER: _ClassVar[int]
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    id: str
    device_id: str
    state: str
    error: str
    at: float
    def __init__(self, id: _Optional[str] = ..., device_id: _Optional[str] = ..., state: _Optional[str] = ..., error: _Optional[str] = ..., at: _Optional[float] = ...) -> None: ...

class EdgeMessage(_message.Message):
    __slots__ = ("hello", "batch", "status", "stats", "command_update")
    HELLO_FIELD_NUMBER: _ClassVar[int]
    BATCH_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    STATS_FIELD_NUMBER: _ClassVar[int]
    COMMAND_UPDATE_FIELD_NUMBER: _ClassVar[int]
    hello: Hello
    batch: Batch
    status: DeviceStatus
    stats: EdgeStats
    command_update: CommandUpdate
    def __init__(self, hello: _Optional[_Union[Hello, _Mapping]] = ..., batch: _Optional[_Union[Batch, _Mapping]] = ..., status: _Optional[_Union[DeviceStatus, _Mapping]] = ..., stats: _Optional[_Union[EdgeStats, _Mapping]] = ..., command_update: _Optional[_Union[CommandUpdate, _Mapping]] = ...) -> None: ...

class Ack(_message.Message):
    __slots__ = ("batch_id", "stored", "duplicates", "refused")
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    STORED_FIELD_NUMBER: _ClassVar[int]
    DUPLICATES_FIELD_NUMBER: _ClassVar[int]
    REFUSED_FIELD_NUMBER: _ClassVar[int]
    batch_id: int
    stored: int
    duplicates: int
    refused: int
    def __init__(self, batch_id: _Optional[int] = ..., stored: _Optional[int] = ..., duplicates: _Optional[int] = ..., refused: _Optional[int] = ...) -> None: ...

class Command(_message.Message):
    __slots__ = ("id", "device_id", "payload", "expires_at")
    ID_FIELD_NUMBER: _ClassVar[int]
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    id: str
    device_id: str
    payload: bytes
    expires_at: float
    def __init__(self, id: _Optional[str] = ..., device_id: _Optional[str] = ..., payload: _Optional[bytes] = ..., expires_at: _Optional[float] = ...) -> None: ...

class CloudMessage(_message.Message):
    __slots__ = ("ack", "command")
    ACK_FIELD_NUMBER: _ClassVar[int]
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    ack: Ack
    command: Command
    def __init__(self, ack: _Optional[_Union[Ack, _Mapping]] = ..., command: _Optional[_Union[Command, _Mapping]] = ...) -> None: ...

class SubscribeRequest(_message.Message):
    __slots__ = ("devices", "metrics", "after_id")
    DEVICES_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    AFTER_ID_FIELD_NUMBER: _ClassVar[int]
    devices: _containers.RepeatedScalarFieldContainer[str]
    metrics: _containers.RepeatedScalarFieldContainer[str]
    after_id: int
    def __init__(self, devices: _Optional[_Iterable[str]] = ..., metrics: _Optional[_Iterable[str]] = ..., after_id: _Optional[int] = ...) -> None: ...

class SampleEvent(_message.Message):
    __slots__ = ("id", "sample")
    ID_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_FIELD_NUMBER: _ClassVar[int]
    id: int
    sample: Sample
    def __init__(self, id: _Optional[int] = ..., sample: _Optional[_Union[Sample, _Mapping]] = ...) -> None: ...
