"""The hand-framed batch is exactly what the generated protobuf code reads."""

from hypothesis import given
from hypothesis import strategies as st

from edgewire.sample import Sample
from edgewire.v1 import edgewire_pb2 as pb
from edgewire.wire import batch_message, decode_sample, encode_sample, from_proto, to_proto

samples = st.builds(
    Sample,
    device_id=st.from_regex(r"\A[a-z0-9][a-z0-9_-]{0,63}\Z"),
    boot=st.integers(0, 2**63 - 1),
    seq=st.integers(0, 2**63 - 1),
    ts=st.floats(allow_nan=False, allow_infinity=False),
    m=st.dictionaries(
        st.from_regex(r"\A[a-z][a-z0-9_]{0,31}\Z"),
        st.booleans() | st.floats(allow_nan=False, allow_infinity=False),
        min_size=1,
        max_size=64,
    ),
    ts_from_edge=st.booleans(),
)


@given(samples)
def test_a_sample_survives_encoding(sample: Sample) -> None:
    assert decode_sample(encode_sample(sample)) == sample


@given(samples)
def test_the_fast_encoder_writes_what_protobuf_writes(sample: Sample) -> None:
    assert encode_sample(sample) == to_proto(sample).SerializeToString()


@given(st.integers(0, 2**64 - 1), st.lists(samples, max_size=20))
def test_batch_framing_parses_back(batch_id: int, batch: list[Sample]) -> None:
    message = pb.EdgeMessage.FromString(batch_message(batch_id, [encode_sample(s) for s in batch]))
    assert message.WhichOneof("kind") == "batch"
    assert message.batch.batch_id == batch_id
    assert [from_proto(s) for s in message.batch.samples] == batch
