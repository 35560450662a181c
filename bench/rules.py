"""Samples/s through the edge's reduction rules (edge/rules), one core.

    .venv/bin/python -m bench.rules

100 boards each send one sample a second for an hour of ts (360,000
samples): every board temp_f and rh, every third pressure_pa too, the
values drifting as a random walk (seeded). The chain has five rules, of the
kinds a greenhouse config has: a range check, a unit conversion by scale, a
rename, a deadband with heartbeat and a downsampling interval. Each run
starts a fresh chain over the same samples; the figure is the median of 5.
Target: at least 200,000 samples/s. Results go to bench/results/rules.json.
"""

import random
import statistics
import time
from typing import Any

import msgspec

from bench.common import write_result
from edge.rules import RuleChain, parse_rules
from edgewire.sample import Sample

DEVICES = 100
SECONDS = 3600
RUNS = 5
START = 1_795_000_000.0
TARGET = 200_000

RULES: list[dict[str, Any]] = [
    {"name": "sane", "devices": "gh-*", "metrics": ["temp_f", "rh"],
     "range": {"min": -40, "max": 185}},
    {"name": "fahrenheit", "metrics": "temp_f", "scale": {"factor": 5 / 9, "offset": -160 / 9}},
    {"name": "celsius name", "metrics": "temp_f", "rename": "temp_c"},
    {"name": "quiet temperatures", "metrics": "temp_*",
     "deadband": {"abs": 0.2, "max_silence_s": 300}},
    {"name": "slow humidity", "metrics": "rh", "min_interval_s": 10},
]  # fmt: skip


def make_samples() -> list[Sample]:
    rng = random.Random(7)
    temp = [rng.uniform(50, 90) for _ in range(DEVICES)]
    rh = [rng.uniform(30, 70) for _ in range(DEVICES)]
    pressure = [rng.uniform(99_000, 102_000) for _ in range(DEVICES)]
    samples = []
    for second in range(SECONDS):
        for d in range(DEVICES):
            temp[d] += rng.gauss(0, 0.1)
            rh[d] = min(100.0, max(0.0, rh[d] + rng.gauss(0, 0.2)))
            m: dict[str, float | bool] = {"temp_f": round(temp[d], 2), "rh": round(rh[d], 1)}
            if d % 3 == 0:
                pressure[d] += rng.gauss(0, 5)
                m["pressure_pa"] = round(pressure[d])
            samples.append(Sample(f"gh-{d}", 1, second, START + second + d / 1000, m))
    return samples


def run(samples: list[Sample]) -> tuple[float, RuleChain, int, int]:
    chain = parse_rules(RULES)
    apply = chain.apply
    started = time.perf_counter()
    out = [apply(sample) for sample in samples]
    elapsed = time.perf_counter() - started
    kept = [sample for sample in out if sample is not None]
    return elapsed, chain, len(kept), sum(len(sample.m) for sample in kept)


def main() -> None:
    samples = make_samples()
    metrics_in = sum(len(sample.m) for sample in samples)
    rates = []
    chain, kept, metrics_out = None, 0, 0
    for _ in range(RUNS):
        elapsed, chain, kept, metrics_out = run(samples)
        rates.append(len(samples) / elapsed)
    assert chain is not None
    empty = parse_rules([])
    started = time.perf_counter()
    for sample in samples:
        empty.apply(sample)
    empty_rate = len(samples) / (time.perf_counter() - started)
    rate = statistics.median(rates)
    print(f"{rate:,.0f} samples/s through {len(RULES)} rules (target {TARGET:,})")
    write_result(
        "rules",
        {
            "samples": len(samples),
            "devices": DEVICES,
            "rules": [spec.name for spec in chain.specs],
            "samples_per_s": round(rate),
            "runs_samples_per_s": [round(r) for r in rates],
            "target_samples_per_s": TARGET,
            "empty_chain_samples_per_s": round(empty_rate),
            "samples_kept": kept,
            "metrics_in": metrics_in,
            "metrics_out": metrics_out,
            "counters": [msgspec.structs.asdict(counters) for counters in chain.counters()],
        },
    )


if __name__ == "__main__":
    main()
