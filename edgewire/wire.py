"""Conversions between the Sample type and its protobuf form (edgewire.v1).

The edge keeps each sample as its serialized `edgewire.v1.Sample` from the
moment it is validated: the buffer stores those bytes, and a batch on the
wire is framed around them by hand (`batch_message`), so a sample is encoded
once and never parsed again until it reaches the cloud. tests/test_wire.py
holds the framing to what the generated parser reads.
"""

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
    return to_proto(sample).SerializeToString()


def decode_sample(data: bytes) -> Sample:
    return from_proto(pb.Sample.FromString(data))


def _varint(value: int) -> bytes:
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
