"""Fuzzing the input paths (issue 8), the short run CI makes: every file of
the seed corpus (tests/fuzz/corpus/<target>/) through its target, then
Hypothesis on each target, with inputs built from the format's parts or
mutated from the seeds, and with plain random bytes.

Each input is bounded: Hypothesis's deadline for time, tracemalloc for
memory (tests/fuzz/targets.py run_bounded), and the replay checks both.

    EDGEWIRE_FUZZ_EXAMPLES=2000 pytest tests/test_fuzz.py   # a longer run
    python -m tests.fuzz rules --seconds 600                 # longer still

A product bug a fuzzer found stays in the corpus as found-*, listed in
KNOWN_FAILURES until it is fixed: the replay leaves it out, the Hypothesis
tests let that failure (and that one only) pass, and
test_a_known_failure_still_fails says when the fix has landed and the entry
can go.
"""

import os
import tracemalloc
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fuzz.strategies import CORPUS, any_bytes, structured
from tests.fuzz.targets import (
    TARGETS,
    TIME_LIMIT_S,
    Known,
    dotted_parts,
    raised_at,
    run_bounded,
)

# Per target and strategy; the default keeps this module well under half a minute.
EXAMPLES = int(os.environ.get("EDGEWIRE_FUZZ_EXAMPLES", "150"))

# Product bugs the fuzzers found, each with the input that shows it; until
# its fix lands, its failure (matched by type, place and message) is let
# through, so the rest of the suite stays meaningful.
KNOWN_FAILURES: list[Known] = [
    Known(
        "settings",
        "found-long-dotted-key.toml",
        AssertionError,
        "tests/fuzz/targets.py:run_bounded",
        "tomllib's memory grows with the square of a dotted key's parts: 5 KB, 25 MB; 16 KB, "
        "250 MB (targets.TOML_DOTS_PER_LINE_MAX keeps the fuzzers below gigabytes)",
        says="MB traced",
        given=lambda data: dotted_parts(data) > 1000,
    ),
]


@pytest.fixture(scope="module", autouse=True)
def _traced() -> Iterator[None]:
    """tracemalloc on for the module's inputs, once (see run_bounded)."""
    if tracemalloc.is_tracing():
        yield
        return
    tracemalloc.start()
    try:
        yield
    finally:
        tracemalloc.stop()


def is_known(target: str, data: bytes, exc: BaseException) -> bool:
    return any(known.matches(target, data, exc) for known in KNOWN_FAILURES)


def _corpus() -> list[tuple[str, Path]]:
    known = {(k.target, k.found) for k in KNOWN_FAILURES}
    return [
        (target, path)
        for target in sorted(TARGETS)
        for path in sorted((CORPUS / target).iterdir())
        if (target, path.name) not in known
    ]


REPLAYED = _corpus()


def test_every_target_has_seeds() -> None:
    assert sorted(p.name for p in CORPUS.iterdir() if p.is_dir()) == sorted(TARGETS)
    for target in TARGETS:
        assert len(list((CORPUS / target).iterdir())) >= 4, target
    total = sum(p.stat().st_size for p in CORPUS.rglob("*") if p.is_file())
    assert total < 100_000, f"the corpus is {total} bytes: keep it small, it is in git"


@pytest.mark.parametrize(("target", "path"), REPLAYED, ids=[f"{t}/{p.name}" for t, p in REPLAYED])
def test_corpus_replays(target: str, path: Path) -> None:
    run_bounded(TARGETS[target], path.read_bytes())


@pytest.mark.parametrize(
    "known", KNOWN_FAILURES, ids=[f"{k.target}/{k.found}" for k in KNOWN_FAILURES]
)
def test_a_known_failure_still_fails(known: Known) -> None:
    data = (CORPUS / known.target / known.found).read_bytes()
    exc = _failure(known.target, data)
    if exc is None:
        pytest.fail(f"{known.found} passes: fixed? Take it out of KNOWN_FAILURES, to replay it")
    assert known.matches(known.target, data, exc), (
        f"{known.found} now fails otherwise, at {raised_at(exc)}: {exc!r}"
    )


def _failure(target: str, data: bytes) -> Exception | None:
    try:
        run_bounded(TARGETS[target], data)
    except Exception as exc:  # noqa: BLE001  (any: the caller tells which)
        return exc
    return None


def check(target: str, data: bytes) -> None:
    """One Hypothesis example: the target, bounded in memory (the deadline
    bounds its time), with the failures of KNOWN_FAILURES let through."""
    try:
        run_bounded(TARGETS[target], data, time_limit_s=None)
    except Exception as exc:
        if not is_known(target, data, exc):
            raise


_fuzz = settings(
    max_examples=EXAMPLES,
    deadline=timedelta(seconds=TIME_LIMIT_S),
    # Inputs reach 64 KB on purpose, and the targets touch the disk.
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)


@pytest.mark.parametrize("target", sorted(TARGETS))
@_fuzz
@given(data=st.data())
def test_built_and_mutated_inputs(target: str, data: st.DataObject) -> None:
    check(target, data.draw(structured(target), label="input"))


@pytest.mark.parametrize("target", sorted(TARGETS))
@settings(_fuzz, max_examples=max(1, EXAMPLES // 3))
@given(data=st.data())
def test_random_bytes(target: str, data: st.DataObject) -> None:
    check(target, data.draw(any_bytes(), label="input"))
