"""The named unit conversions a `convert = "..."` rule may use.

Every conversion here is linear, `value * factor + offset`, so a convert rule
runs as a scale rule; the name only saves writing (and mistyping) constants.
"""

from typing import NamedTuple


class Linear(NamedTuple):
    factor: float
    offset: float


CONVERSIONS: dict[str, Linear] = {
    # temperature
    "f_to_c": Linear(5 / 9, -32 * 5 / 9),
    "c_to_f": Linear(9 / 5, 32.0),
    "k_to_c": Linear(1.0, -273.15),
    "c_to_k": Linear(1.0, 273.15),
    # pressure
    "pa_to_hpa": Linear(0.01, 0.0),
    "hpa_to_pa": Linear(100.0, 0.0),
    "pa_to_kpa": Linear(0.001, 0.0),
    "kpa_to_pa": Linear(1000.0, 0.0),
    "inhg_to_hpa": Linear(33.8638866667, 0.0),
    "hpa_to_inhg": Linear(1 / 33.8638866667, 0.0),
    # speed (wind)
    "mps_to_kmh": Linear(3.6, 0.0),
    "kmh_to_mps": Linear(1 / 3.6, 0.0),
    # length (rain gauges, distance sensors)
    "in_to_mm": Linear(25.4, 0.0),
    "mm_to_in": Linear(1 / 25.4, 0.0),
    # electrical and time, as board ADC drivers and timers report them
    "mv_to_v": Linear(0.001, 0.0),
    "v_to_mv": Linear(1000.0, 0.0),
    "ms_to_s": Linear(0.001, 0.0),
    "s_to_ms": Linear(1000.0, 0.0),
}
