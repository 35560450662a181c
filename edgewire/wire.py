"""Conversions between the Sample type and its protobuf form (edgewire.v1).

The edge keeps each sample as its serialized `edgewire.v1.Sample` from the
moment it is validated: the buffer stores those bytes, and a batch on the
wire is framed around them by hand (`batch_message`), so a sample is encoded
once and never parsed again until it reaches the cloud. tests/test_wire.py
holds the framing to what the generated parser reads.
"""

import math
import struct
from collections.abc import Sequence

from edgewire.sample import Metrics, Sample
from edgewire.v1 import edgewire_pb2 as pb

# Tags (field number << 3 | wire type 2, length-delimited) of edgewire.proto.
_EDGE_MESSAGE_BATCH = b"\x12"  # EdgeMessage.batch = 2
_BATCH_ID = b"\x08"  # Batch.batch_id = 1 (varint)
_BATCH_SAMPLE = b"\x12"  # Batch.samples = 2


def to_proto(sample: Sample) -> pb.Sample:
    return pb.Sample(
        device_id=sample.device_id,
        boot=sample.boot,
        seq=sample.seq,
        ts=sample.ts,
        ts_from_edge=sample.ts_from_edge,
        metrics=[
            pb.Metric(name=name, flag=value)
            if isinstance(value, bool)
            else pb.Metric(name=name, number=value)
            for name, value in sample.m.items()
        ],
    )


def from_proto(message: pb.Sample) -> Sample:
    metrics: Metrics = {}
    for metric in message.metrics:
        is_flag = metric.WhichOneof("value") == "flag"
        metrics[metric.name] = metric.flag if is_flag else metric.number
    return Sample(
        device_id=message.device_id,
        boot=message.boot,
        seq=message.seq,
        ts=message.ts,
        m=metrics,
        ts_from_edge=message.ts_from_edge,
    )


def encode_sample(sample: Sample) -> bytes:
    """The serialized `edgewire.v1.Sample`, byte for byte what protobuf
    writes (tests/test_wire.py holds it to that), built directly: the edge
    encodes every sample it receives, and this takes about half the time of
    building the message objects first."""
    parts = [_string_field(_DEVICE_ID, sample.device_id, _device_cache)]
    if sample.boot:
        parts += (_BOOT, _varint(sample.boot))
    if sample.seq:
        parts += (_SEQ, _varint(sample.seq))
    if sample.ts or math.copysign(1.0, sample.ts) < 0:  # protobuf writes -0.0
        parts += (_TS, _double(sample.ts))
    if sample.ts_from_edge:
        parts.append(_TS_FROM_EDGE_TRUE)
    for name, value in sample.m.items():
        head = _string_field(_METRIC_NAME, name, _name_cache)
        if value is True:
            body = head + _FLAG_TRUE
        elif value is False:
            body = head + _FLAG_FALSE
        else:
            body = head + _NUMBER + _double(value)
        parts += (_METRICS, _varint(len(body)), body)
    return b"".join(parts)


# Field tags of edgewire.v1.Sample and Metric (number << 3 | wire type).
_DEVICE_ID = b"\x0a"
_BOOT = b"\x10"
_SEQ = b"\x18"
_TS = b"\x21"
_TS_FROM_EDGE_TRUE = b"\x28\x01"
_METRICS = b"\x32"
_METRIC_NAME = b"\x0a"
_NUMBER = b"\x11"
_FLAG_TRUE = b"\x18\x01"
_FLAG_FALSE = b"\x18\x00"
_double = struct.Struct("<d").pack
# Device ids and metric names repeat endlessly; their encoded fields are kept
# (bounded, in case of a flood of distinct ids).
_CACHE_MAX = 10_000
_device_cache: dict[str, bytes] = {}
_name_cache: dict[str, bytes] = {}


def _string_field(tag: bytes, text: str, cache: dict[str, bytes]) -> bytes:
    field = cache.get(text)
    if field is None:
        raw = text.encode()
        field = tag + _varint(len(raw)) + raw
        if len(cache) < _CACHE_MAX:
            cache[text] = field
    return field


def decode_sample(data: bytes) -> Sample:
    return from_proto(pb.Sample.FromString(data))


def _varint(value: int) -> bytes:
    if value < 0x80:
        return bytes((value,))
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def batch_message(batch_id: int, samples: Sequence[bytes]) -> bytes:
    """A serialized EdgeMessage{batch: Batch{batch_id, samples}} around
    samples that are already serialized."""
    parts = [_BATCH_ID, _varint(batch_id)]
    for sample in samples:
        parts += (_BATCH_SAMPLE, _varint(len(sample)), sample)
    body = b"".join(parts)
    return _EDGE_MESSAGE_BATCH + _varint(len(body)) + body
