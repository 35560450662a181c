"""A longer fuzz run of one target, by hand, from the checkout:

    .venv/bin/python -m tests.fuzz rules                   # 60 s
    .venv/bin/python -m tests.fuzz validate --seconds 600
    .venv/bin/python -m tests.fuzz ota --hypothesis        # Hypothesis even with atheris
    .venv/bin/python -m tests.fuzz settings --include-known

Targets: validate, rules, settings, proto, ota (tests/fuzz/targets.py).

With atheris installed (`.venv/bin/pip install atheris`; wheels for Linux
x86_64 only), libFuzzer mutates the seed corpus under coverage guidance of
edgewire's code and the stdlib parsers it uses. The inputs it keeps go to a
scratch folder (printed at the start), never into the repo's corpus, and a
failing input is written there as crash-<sha1>, its traceback on stderr.
Without atheris, or with --hypothesis, Hypothesis runs the strategies of
tests/test_fuzz.py (built, mutated and random inputs) in rounds until the
time is up, and writes a failing input, shrunk, to the scratch folder as
found-<sha256 prefix>.

The failures listed in KNOWN_FAILURES of tests/test_fuzz.py are let through
(a run would otherwise stop at the first of them every time), unless
--include-known. To keep a new one: copy it to
tests/fuzz/corpus/<target>/found-<what it is>, and list it in KNOWN_FAILURES
until the product is fixed.
"""

import argparse
import hashlib
import importlib
import logging
import sys
import tempfile
import time
import tracemalloc
from datetime import timedelta
from pathlib import Path
from typing import Any

TARGET_NAMES = ("validate", "rules", "settings", "proto", "ota")
# The top-level packages and modules (the stdlib parsers among them) whose
# code atheris instruments for coverage, by exact name.
_INSTRUMENTED = (
    "edge", "edgewire", "cloud", "firmware", "ew_board", "ew_ota", "ew_trial", "tomllib", "json",
)  # fmt: skip
# Hypothesis examples between two looks at the clock.
_ROUND = 200


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.fuzz", description="A longer fuzz run of one target."
    )
    parser.add_argument("target", choices=TARGET_NAMES)
    parser.add_argument("--seconds", type=int, default=60, help="how long to run (default 60)")
    parser.add_argument("--hypothesis", action="store_true", help="use Hypothesis, not atheris")
    parser.add_argument("--include-known", action="store_true", help="stop at known bugs too")
    parser.add_argument("--out", type=Path, help="scratch folder (default: a new temporary one)")
    args = parser.parse_args(argv)
    scratch = args.out is None
    out = args.out or Path(tempfile.mkdtemp(prefix=f"edgewire-fuzz-{args.target}-"))
    out.mkdir(parents=True, exist_ok=True)
    # The cloud's handlers log every refused sample; thousands a second here.
    logging.disable(logging.CRITICAL)
    tracemalloc.start()  # once, for every input (see run_bounded)
    atheris = None if args.hypothesis else _atheris()
    engine = "Hypothesis" if atheris is None else "atheris"
    print(
        f"fuzzing {args.target} for {args.seconds} s with {engine}; scratch folder {out}",
        flush=True,
    )
    if atheris is not None:
        return _run_atheris(atheris, args.target, args.seconds, out, args.include_known)
    code = _run_hypothesis(args.target, args.seconds, out, args.include_known)
    if scratch and not any(out.iterdir()):
        out.rmdir()  # nothing found: leave nothing behind
    return code


def _atheris() -> Any:
    try:
        # Imported by name: it has no type information, and it is optional.
        return importlib.import_module("atheris")
    except ImportError:
        return None


def _run_atheris(atheris: Any, target: str, seconds: int, out: Path, include_known: bool) -> int:
    # Instrumented as they are imported, so before anything of edgewire is.
    with atheris.instrument_imports(include=list(_INSTRUMENTED)):
        from tests.fuzz.strategies import CORPUS
        from tests.fuzz.targets import MAX_INPUT, TARGETS, TIME_LIMIT_S, run_bounded
        from tests.test_fuzz import is_known
    run = TARGETS[target]

    def one_input(data: bytes) -> None:
        try:
            run_bounded(run, data)
        except Exception as exc:
            if include_known or not is_known(target, data, exc):
                raise

    # libFuzzer adds what it finds to the first folder; the seeds are read only.
    found = out / "corpus"
    found.mkdir(exist_ok=True)
    atheris.Setup(
        [
            sys.argv[0],
            f"-max_total_time={seconds}",
            f"-max_len={MAX_INPUT + 64}",
            f"-timeout={int(TIME_LIMIT_S * 5)}",  # a hang: libFuzzer stops it
            "-rss_limit_mb=4096",
            f"-artifact_prefix={out}/",
            str(found),
            str(CORPUS / target),
        ],
        one_input,
    )
    atheris.Fuzz()  # exits the process when the time is up or on a failure
    return 0


def _run_hypothesis(target: str, seconds: int, out: Path, include_known: bool) -> int:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from tests.fuzz.strategies import any_bytes, structured
    from tests.fuzz.targets import TARGETS, TIME_LIMIT_S, run_bounded
    from tests.test_fuzz import is_known

    run = TARGETS[target]
    last: list[bytes] = [b""]

    @settings(
        max_examples=_ROUND,
        deadline=timedelta(seconds=TIME_LIMIT_S),
        suppress_health_check=list(HealthCheck),
        print_blob=True,
    )
    @given(st.one_of(structured(target), structured(target), any_bytes()))
    def one_round(data: bytes) -> None:
        last[0] = data  # Hypothesis runs the shrunk failing input last
        try:
            run_bounded(run, data, time_limit_s=None)
        except Exception as exc:
            if include_known or not is_known(target, data, exc):
                raise

    end = time.monotonic() + seconds
    rounds = 0
    while time.monotonic() < end:
        try:
            one_round()
        except Exception:
            path = out / f"found-{hashlib.sha256(last[0]).hexdigest()[:12]}"
            path.write_bytes(last[0])
            print(f"{target}: failed on {len(last[0])} bytes, written to {path}", flush=True)
            raise  # with Hypothesis's report of it
        rounds += 1
    print(f"{target}: about {rounds * _ROUND} inputs, no failure")
    return 0


if __name__ == "__main__":
    sys.exit(main())
