"""Conversions between the Sample type and its protobuf form (edgewire.v1)."""

from edgewire.sample import Metrics, Sample
from edgewire.v1 import edgewire_pb2 as pb


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
        metrics[metric.name] = (
            metric.flag if metric.WhichOneof("value") == "flag" else metric.number
        )
    return Sample(
        device_id=message.device_id,
        boot=message.boot,
        seq=message.seq,
        ts=message.ts,
        m=metrics,
        ts_from_edge=message.ts_from_edge,
    )
