"""The Pi's own sensors, status LED and flush button (edge/gpio) over the
simulated Pi (edgewire/sim/pi): fake pins and an I2C bus holding a BME280's
registers, under the real Adafruit driver. Nothing of edge/gpio is faked."""

import ast
import asyncio
import functools
import itertools
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from edge.gpio import backend as backend_module
from edge.gpio.backend import SIM_ENV, Backend, choose, select_backend
from edge.gpio.button import Button
from edge.gpio.config import GpioSettings, parse_gpio_settings
from edge.gpio.led import LedPattern, StatusLed
from edge.gpio.local import BOOT_FILE, LocalDevice, SampleEncoder
from edge.validate import validate_telemetry
from edgewire.errors import ConfigError, SetupError
from edgewire.sim.hardware import BME280_CAL_H, BME280_CAL_P, BME280_CAL_T, BME280Chip
from edgewire.sim.pi import EXAMPLE_ADC, GPIO, SimPi
from edgewire.sim.pi import reset as reset_pi
from edgewire.sim.pi.pins import HIGH, IN, LOW, OUT

ROOT = Path(__file__).resolve().parent.parent
LED, BUTTON = 17, 27
SIMULATED = {SIM_ENV: "1"}


@pytest.fixture
def pi() -> Iterator[SimPi]:
    """A freshly powered simulated Pi, BME280s at 0x76 and 0x77."""
    yield reset_pi()
    reset_pi()


def settings(**overrides: Any) -> GpioSettings:
    table: dict[str, Any] = {
        "device_id": "pi-greenhouse",
        "interval_s": 0.1,
        "i2c_sensors": [{"kind": "bme280", "address": 0x76}],
        "status_led_pin": LED,
        "button_pin": BUTTON,
    }
    table.update(overrides)
    return parse_gpio_settings(table)


def simulated(config: GpioSettings) -> Backend:
    return select_backend(config, environ=SIMULATED)


# -- the BME280's expected readings, from the datasheet's float formulas ------


def datasheet(adc_t: int, adc_p: int, adc_h: int) -> dict[str, float]:
    """Bosch BME280 datasheet section 8.1, written out once more here."""
    t1, t2, t3 = BME280_CAL_T
    p1, p2, p3, p4, p5, p6, p7, p8, p9 = BME280_CAL_P
    h1, h2, h3, h4, h5, h6 = BME280_CAL_H
    t_fine = (adc_t / 16384 - t1 / 1024) * t2 + (adc_t / 131072 - t1 / 8192) ** 2 * t3
    v1 = t_fine / 2 - 64000
    v2 = (v1 * v1 * p6 / 32768 + v1 * p5 * 2) / 4 + p4 * 65536
    v1 = (1 + (p3 * v1 * v1 / 524288 + p2 * v1) / 524288 / 32768) * p1
    p = (1048576 - adc_p - v2 / 4096) * 6250 / v1
    p += (p9 * p * p / 2147483648 + p * p8 / 32768 + p7) / 16
    h = t_fine - 76800
    h = (adc_h - (h4 * 64 + h5 / 16384 * h)) * (
        h2 / 65536 * (1 + h6 / 67108864 * h * (1 + h3 / 67108864 * h))
    )
    h *= 1 - h1 * h / 524288
    return {"temp_c": t_fine / 5120, "pressure_hpa": p / 100, "rh": max(0.0, min(100.0, h))}


def test_the_datasheet_formulas_give_boschs_worked_example() -> None:
    expected = datasheet(*EXAMPLE_ADC)
    assert expected["temp_c"] == pytest.approx(25.08, abs=0.005)
    assert expected["pressure_hpa"] == pytest.approx(1006.5327, abs=0.001)  # 100653.27 Pa


def assert_like_datasheet(
    metrics: dict[str, float], adc: tuple[int, int, int], prefix: str = ""
) -> None:
    expected = datasheet(*adc)
    assert metrics[prefix + "temp_c"] == pytest.approx(expected["temp_c"], abs=0.01)
    assert metrics[prefix + "pressure_hpa"] == pytest.approx(expected["pressure_hpa"], abs=0.01)
    assert metrics[prefix + "rh"] == pytest.approx(expected["rh"], abs=0.1)


# -- the LED -------------------------------------------------------------------

ON, OFF = True, False


@pytest.mark.parametrize(
    ("streaming", "buffering", "stopped", "now", "lit"),
    [
        # streaming, nothing waiting: steady on
        (True, False, False, 0.2, ON),
        (True, False, False, 0.7, ON),
        (True, False, False, 1234.9, ON),
        # buffering while the cloud is down: 1 Hz, lit in the first half-second
        (False, True, False, 0.2, ON),
        (False, True, False, 0.7, OFF),
        (False, True, False, 1.2, ON),
        (False, True, False, 1.7, OFF),
        # streaming again but a backlog still draining: still blinking
        (True, True, False, 0.7, OFF),
        (True, True, False, 3.1, ON),
        # no cloud and nothing buffered yet: the cloud is down, so blinking
        (False, False, False, 0.7, OFF),
        (False, False, False, 0.2, ON),
        # stopped: off, whatever else is true
        (True, False, True, 0.2, OFF),
        (False, True, True, 0.2, OFF),
        (True, True, True, 0.2, OFF),
        (False, False, True, 0.2, OFF),
    ],
)
def test_led_pattern(
    streaming: bool, buffering: bool, stopped: bool, now: float, lit: bool
) -> None:
    assert LedPattern().level(streaming, buffering, stopped, now) is lit


def test_led_blinks_at_one_hertz_and_says_when_it_changes() -> None:
    pattern = LedPattern()
    levels = [pattern.level(False, True, False, ms / 1000) for ms in range(10_000)]
    rises = sum(1 for a, b in itertools.pairwise(levels) if b and not a)
    assert rises == 9
    assert levels[0]
    assert sum(levels) == 5000, "lit half the time"
    assert pattern.next_change(False, True, False, 0.2) == pytest.approx(0.5)
    assert pattern.next_change(False, True, False, 0.5) == pytest.approx(1.0)
    assert pattern.next_change(True, False, False, 0.2) is None, "steady: nothing to wait for"
    assert pattern.next_change(True, True, True, 0.2) is None


def test_status_led_drives_its_pin_and_is_off_when_closed(pi: SimPi) -> None:
    GPIO.setmode(GPIO.BCM)
    led = StatusLed(GPIO, LED)
    assert pi.pins.direction(LED) == OUT
    assert pi.pins.level(LED) == LOW
    led.show(True)
    led.show(True)
    assert pi.pins.level(LED) == HIGH
    led.show(False)
    assert [level for _, level in pi.pins.history(LED)] == [LOW, HIGH, LOW], "writes on change"
    led.show(True)
    led.close()
    assert pi.pins.level(LED) == LOW
    assert pi.pins.direction(LED) is None


# -- the button -------------------------------------------------------------------


def test_a_bouncing_press_calls_back_once(pi: SimPi) -> None:
    GPIO.setmode(GPIO.BCM)
    presses: list[float] = []
    button = Button(GPIO, BUTTON, lambda: presses.append(pi.pins.now), bounce_ms=200)
    assert pi.pins.direction(BUTTON) == IN
    assert pi.pins.level(BUTTON) == HIGH, "held high by the internal pull-up"
    pi.pins.press(BUTTON, bounces=3)  # low, high, low, high, low... 1 ms apart
    assert len(presses) == 1
    pi.pins.advance(0.4)  # held
    pi.pins.release(BUTTON, bounces=3)  # dips low as it bounces back up
    assert len(presses) == 1, "letting go is no press"
    pi.pins.advance(0.4)
    pi.pins.press(BUTTON)
    pi.pins.advance(0.1)
    pi.pins.release(BUTTON)
    assert len(presses) == 2
    pi.pins.advance(0.05)
    pi.pins.press(BUTTON)  # 100 ms after the last press: within bouncetime
    assert len(presses) == 2
    button.close()
    assert pi.pins.edge_detection(BUTTON) is None
    assert pi.pins.direction(BUTTON) is None


# -- LocalDevice over the simulated Pi -------------------------------------------


class Agent:
    """What LocalDevice sees of the agent: the submit and button callbacks."""

    def __init__(self) -> None:
        self.payloads: list[tuple[str, bytes]] = []
        self.flushes = 0

    def submit(self, device_id: str, payload: bytes) -> None:
        self.payloads.append((device_id, payload))

    def flush(self) -> None:
        self.flushes += 1

    def samples(self) -> list[dict[str, Any]]:
        return [msgspec.json.decode(payload) for _, payload in self.payloads]


def run_until(
    device: LocalDevice,
    done: Callable[[], bool],
    during: Callable[[], None] | None = None,
    timeout: float = 10.0,
) -> None:
    """Run the device until `done()`, calling `during()` each 10 ms; then stop it."""

    async def main() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(device.run(stop))
        deadline = time.monotonic() + timeout
        while not done():
            assert time.monotonic() < deadline, "timed out"
            assert not task.done(), "LocalDevice.run ended by itself"
            if during is not None:
                during()
            await asyncio.sleep(0.01)
        stop.set()
        await asyncio.wait_for(task, 5)

    asyncio.run(main())


def has_samples(agent: Agent, count: int) -> bool:
    return len(agent.payloads) >= count


def device(
    tmp_path: Path, agent: Agent, config: GpioSettings | None = None, **overrides: Any
) -> LocalDevice:
    config = config or settings(**overrides)
    return LocalDevice(config, tmp_path, agent.submit, agent.flush, backend=simulated(config))


def test_samples_are_what_a_board_would_publish(tmp_path: Path, pi: SimPi) -> None:
    agent = Agent()
    local = device(tmp_path, agent)
    run_until(local, lambda: len(agent.payloads) >= 3)
    now = time.time()
    for seq, (device_id, payload) in enumerate(agent.payloads):
        assert device_id == "pi-greenhouse"
        outcome = validate_telemetry(device_id, payload, now)
        assert not outcome.rejected
        (accepted,) = outcome.accepted
        sample = accepted.sample
        assert (sample.boot, sample.seq) == (0, seq)
        assert not sample.ts_from_edge, "the Pi's clock is trusted"
        assert abs(sample.ts - now) < 10
        assert set(sample.m) == {"temp_c", "rh", "pressure_hpa"}
        assert_like_datasheet(sample.m, EXAMPLE_ADC)
    assert set(agent.samples()[0]) == {"seq", "boot", "ts", "m"}
    assert local.stats.samples == len(agent.payloads)


def test_two_sensors_and_other_weather(tmp_path: Path, pi: SimPi) -> None:
    cold = (480000, 390000, 22000)
    pi.i2c.chips[0x77] = BME280Chip(*cold)
    agent = Agent()
    sensors = [
        {"kind": "bme280", "address": 0x76},
        {"kind": "bme280", "address": 0x77, "prefix": "out_"},
    ]
    run_until(device(tmp_path, agent, i2c_sensors=sensors), lambda: len(agent.payloads) >= 1)
    metrics = agent.samples()[0]["m"]
    assert len(metrics) == 6
    assert_like_datasheet(metrics, EXAMPLE_ADC)
    assert_like_datasheet(metrics, cold, prefix="out_")


def test_boot_goes_up_at_each_start_and_seq_starts_again(tmp_path: Path, pi: SimPi) -> None:
    seen = []
    for _ in range(3):
        agent = Agent()
        run_until(device(tmp_path, agent), functools.partial(has_samples, agent, 2))
        seen.append([(s["boot"], s["seq"]) for s in agent.samples()[:2]])
    assert seen == [[(0, 0), (0, 1)], [(1, 0), (1, 1)], [(2, 0), (2, 1)]]
    assert (tmp_path / BOOT_FILE).read_text() == "2\n"


def test_an_unreadable_boot_counter_counts_on_from_the_clock(tmp_path: Path, pi: SimPi) -> None:
    (tmp_path / BOOT_FILE).write_text("garbage")
    agent = Agent()
    run_until(device(tmp_path, agent), lambda: len(agent.payloads) >= 1)
    boot = agent.samples()[0]["boot"]
    assert abs(boot - time.time()) < 60, "past every boot a counter could have reached"
    assert (tmp_path / BOOT_FILE).read_text() == f"{boot}\n"


def test_a_failing_sensor_is_left_out_and_the_loop_goes_on(tmp_path: Path, pi: SimPi) -> None:
    del pi.i2c.chips[0x77]  # nothing answers there (yet)
    agent = Agent()
    sensors = [
        {"kind": "bme280", "address": 0x76},
        {"kind": "bme280", "address": 0x77, "prefix": "out_"},
    ]
    local = device(tmp_path, agent, i2c_sensors=sensors)

    def plug_in_after_three() -> None:
        if len(agent.payloads) >= 3 and 0x77 not in pi.i2c.chips:
            pi.i2c.chips[0x77] = BME280Chip(*EXAMPLE_ADC)

    def out_back() -> bool:
        return bool(agent.payloads) and "out_temp_c" in agent.samples()[-1]["m"]

    run_until(local, out_back, plug_in_after_three)
    samples = agent.samples()
    assert all(set(s["m"]) == {"temp_c", "rh", "pressure_hpa"} for s in samples[:3])
    assert [s["seq"] for s in samples] == list(range(len(samples))), "no gaps, no stop"
    assert local.stats.sensor_failures["bme280@0x77"] >= 3
    assert local.stats.sensor_failures["bme280@0x76"] == 0
    assert_like_datasheet(samples[-1]["m"], EXAMPLE_ADC, prefix="out_")


def test_a_foreign_chip_is_left_out(tmp_path: Path, pi: SimPi) -> None:
    pi.i2c.chips[0x77] = BME280Chip(*EXAMPLE_ADC, chip_id=0x58)  # a BMP280 answers 0x58
    agent = Agent()
    sensors = [
        {"kind": "bme280", "address": 0x77},
        {"kind": "bme280", "address": 0x76, "prefix": "b_"},
    ]
    local = device(tmp_path, agent, i2c_sensors=sensors)
    run_until(local, lambda: len(agent.payloads) >= 2)
    assert set(agent.samples()[-1]["m"]) == {"b_temp_c", "b_rh", "b_pressure_hpa"}
    assert local.stats.sensor_failures["bme280@0x77"] >= 2


def test_with_every_sensor_failing_nothing_is_sent_and_nothing_stops(
    tmp_path: Path, pi: SimPi
) -> None:
    pi.i2c.chips.clear()
    agent = Agent()
    local = device(tmp_path, agent)
    run_until(local, lambda: local.stats.empty_readings >= 3)
    assert agent.payloads == []

    pi.i2c.chips[0x76] = BME280Chip(*EXAMPLE_ADC)
    agent2 = Agent()
    local2 = device(tmp_path, agent2)
    run_until(local2, lambda: len(agent2.payloads) >= 1)
    assert agent2.samples()[0]["seq"] == 0, "an empty reading takes no seq"


def test_a_hung_bus_skips_turns_but_not_the_led_or_the_stop(tmp_path: Path, pi: SimPi) -> None:
    pi.i2c.stuck = True  # a chip holds SDA low: every transfer hangs
    agent = Agent()
    local = device(tmp_path, agent)
    started = time.monotonic()
    try:
        run_until(
            local,
            lambda: local.stats.reads_skipped >= 3 and len(pi.pins.history(LED)) >= 3,
        )
    finally:
        pi.i2c.stuck = False  # lets the hung read thread end
    assert time.monotonic() - started < 5
    assert agent.payloads == []
    assert pi.pins.level(LED) == LOW, "stopped: off"


def test_led_follows_the_link_and_is_off_at_stop(tmp_path: Path, pi: SimPi) -> None:
    agent = Agent()
    local = device(tmp_path, agent, i2c_sensors=[])
    marks: dict[str, float] = {}
    changes: list[float] = []  # when the LED was seen to change while buffering

    def writes() -> int:
        return len(pi.pins.history(LED))

    def script() -> None:
        now = time.monotonic()
        if "streaming" not in marks:
            if writes():  # the LED is set up
                local.set_link_state(streaming=True, buffering=False)
                marks["streaming"] = now
        elif "steady" not in marks:
            if pi.pins.level(LED) == HIGH:
                marks["steady"], marks["steady_writes"] = now, writes()
        elif "buffering" not in marks:
            if now - marks["steady"] > 0.7:  # past a half-period of blinking
                assert writes() == marks["steady_writes"], "a steady LED is not written"
                assert pi.pins.level(LED) == HIGH
                local.set_link_state(streaming=False, buffering=True)
                marks["buffering"], marks["seen"] = now, writes()
        elif writes() != marks["seen"]:
            changes.append(now)
            marks["seen"] = writes()

    run_until(local, lambda: len(changes) >= 4, script)
    gaps = [b - a for a, b in itertools.pairwise(changes)]
    assert all(0.3 < gap < 0.75 for gap in gaps), f"half-periods of about 0.5 s: {gaps}"
    assert pi.pins.level(LED) == LOW, "stopped: off"
    assert pi.pins.direction(LED) is None, "released"
    assert pi.pins.direction(BUTTON) is None
    assert pi.pins.edge_detection(BUTTON) is None


def test_the_button_asks_the_agent_for_a_flush(tmp_path: Path, pi: SimPi) -> None:
    agent = Agent()
    local = device(tmp_path, agent, i2c_sensors=[])
    pressed: list[bool] = []

    def press_once() -> None:
        if not pressed and pi.pins.edge_detection(BUTTON) is not None:
            pi.pins.press(BUTTON, bounces=4)
            pi.pins.advance(0.3)
            pi.pins.release(BUTTON, bounces=4)
            pressed.append(True)

    run_until(local, lambda: agent.flushes >= 1, press_once)
    assert agent.flushes == 1
    assert local.stats.button_presses == 1


def test_pins_left_set_up_by_a_crashed_run_are_taken_over(tmp_path: Path, pi: SimPi) -> None:
    GPIO.setmode(GPIO.BCM)
    GPIO.setup(LED, GPIO.OUT, initial=GPIO.HIGH)  # the LED left on: no cleanup happened
    agent = Agent()
    local = device(tmp_path, agent, i2c_sensors=[])
    local.set_link_state(streaming=True, buffering=False)
    # RPi.GPIO warns of a pin in use (an error under this suite's filterwarnings).
    run_until(local, lambda: len(pi.pins.history(LED)) >= 3)
    assert local.stats.gpio_errors == 0
    assert pi.pins.level(LED) == LOW


def test_gpio_that_cannot_start_leaves_the_sensors_running(tmp_path: Path, pi: SimPi) -> None:
    GPIO.setmode(GPIO.BOARD)  # someone else took the header with the other numbering
    agent = Agent()
    local = device(tmp_path, agent)
    run_until(local, lambda: len(agent.payloads) >= 2)
    assert local.stats.gpio_errors == 1


# -- payloads --------------------------------------------------------------------------


def test_sample_encoder_counts_within_a_boot() -> None:
    encoder = SampleEncoder(boot=7)
    first = msgspec.json.decode(encoder.encode({"temp_c": 21.5}, 1_764_331_200.1234))
    second = msgspec.json.decode(encoder.encode({"rh": 40.1}, 1_764_331_210.0))
    assert first == {"seq": 0, "boot": 7, "ts": 1_764_331_200.123, "m": {"temp_c": 21.5}}
    assert second["seq"] == 1
    with pytest.raises(ValueError, match="1 to 64 metrics"):
        encoder.encode({}, 0.0)
    assert encoder.seq == 2, "a refused sample takes no seq"


# -- the [gpio] table ----------------------------------------------------------------


def gpio_table(**changes: Any) -> dict[str, Any]:
    table: dict[str, Any] = {"device_id": "pi-greenhouse"}
    table.update(changes)
    return {k: v for k, v in table.items() if v is not None}


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({}, "[gpio] device_id: missing"),
        (gpio_table(device_id="Pi Greenhouse"), "[gpio] device_id = 'Pi Greenhouse': Expected"),
        (gpio_table(interval_s=0), "[gpio] interval_s = 0: Expected `float` >= 0.1"),
        (gpio_table(interval_s="often"), "[gpio] interval_s = 'often': Expected `float`"),
        (gpio_table(status_led_pin=40), "[gpio] status_led_pin = 40: not a GPIO of the 40-pin"),
        (gpio_table(button_pin=1), "[gpio] button_pin = 1: GPIO1 is kept for the HAT ID EEPROM"),
        (
            gpio_table(status_led_pin=17, button_pin=17),
            "[gpio] button_pin = 17: GPIO17 is the status_led_pin too",
        ),
        (
            gpio_table(i2c_sensors=[{"kind": "bme280", "address": 0x76}], status_led_pin=2),
            "[gpio] status_led_pin = 2: GPIO2 is the I2C bus's SDA, which i2c_sensors use",
        ),
        (
            gpio_table(i2c_sensors=[{"kind": "bme280", "address": 0x40}]),
            "[gpio] i2c_sensors[0].address = 64: a bme280 answers at 0x76 or 0x77",
        ),
        (
            gpio_table(i2c_sensors=[{"kind": "dht22", "address": 0x76}]),
            "[gpio] i2c_sensors[0].kind = 'dht22': Invalid enum value 'dht22'",
        ),
        (
            gpio_table(i2c_sensors=[{"kind": "bme280", "adress": 0x76}]),
            "[gpio] unknown key 'adress' of i2c_sensors[0]",
        ),
        (
            gpio_table(
                i2c_sensors=[
                    {"kind": "bme280", "address": 0x76},
                    {"kind": "bme280", "address": 0x77},
                ]
            ),
            "[gpio] i2c_sensors: bme280@0x76 and bme280@0x77 both give 'temp_c': give one",
        ),
        (
            gpio_table(
                i2c_sensors=[
                    {"kind": "bme280", "address": 0x76},
                    {"kind": "bme280", "address": 0x76, "prefix": "b_"},
                ]
            ),
            "[gpio] i2c_sensors: two sensors at 0x76",
        ),
        (
            gpio_table(i2c_sensors=[{"kind": "bme280", "address": 0x76, "prefix": "Out-"}]),
            "[gpio] i2c_sensors[0].prefix = 'Out-': Expected `str` matching regex",
        ),
        (gpio_table(led_pin=17), "[gpio] unknown key 'led_pin'"),
        (gpio_table(simulate="maybe"), "[gpio] simulate = 'maybe': Expected `bool`"),
    ],
)
def test_bad_gpio_tables_are_one_clear_line(table: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_gpio_settings(table)
    text = str(caught.value)
    assert text.startswith(message), text
    assert "\n" not in text


def test_the_documented_gpio_table_loads() -> None:
    documented = """
[gpio]
device_id = "pi-greenhouse"
interval_s = 10
i2c_sensors = [{ kind = "bme280", address = 0x76 }]
status_led_pin = 17
button_pin = 27
"""
    import tomllib

    config = parse_gpio_settings(tomllib.loads(documented)["gpio"])
    assert config.i2c_sensors[0].address == 0x76
    assert config.pins == (17, 27)
    assert config.interval_s == 10.0
    assert not config.simulate


# -- which layer runs ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flag", "simulate", "missing", "on_pi", "expected"),
    [
        (None, False, [], True, "real"),
        (None, True, [], True, "real"),  # simulate = true never beats a working Pi
        ("1", False, [], True, "simulated"),  # asked for by name: allowed, and logged
        ("1", False, ["RPi.GPIO"], False, "simulated"),
        (None, True, ["RPi.GPIO"], False, "simulated"),
        ("", True, ["board"], False, "simulated"),
        (None, False, ["RPi.GPIO"], False, "not a Raspberry Pi?"),
        ("0", True, ["RPi.GPIO"], False, "or set simulate = true"),
        (None, True, ["RPi.GPIO"], True, "this Raspberry Pi lacks RPi.GPIO"),
        (None, True, ["board", "busio"], True, "lacks adafruit-blinka for [gpio]"),
        ("yes", True, [], False, "EDGEWIRE_SIM_PI='yes'"),
    ],
)
def test_choice_of_layer(
    flag: str | None, simulate: bool, missing: list[str], on_pi: bool, expected: str
) -> None:
    if expected in ("real", "simulated"):
        assert choose(flag, simulate, missing, on_pi) == expected
    else:
        with pytest.raises(SetupError, match=re.escape(expected)):
            choose(flag, simulate, missing, on_pi)


def test_this_machine_simulates_only_when_told(pi: SimPi, monkeypatch: pytest.MonkeyPatch) -> None:
    # Whatever the host, pretend RPi.GPIO is missing and this is no Pi.
    monkeypatch.setattr(backend_module, "is_raspberry_pi", lambda: False)
    real_importable = backend_module._importable
    monkeypatch.setattr(
        backend_module, "_importable", lambda name: name != "RPi.GPIO" and real_importable(name)
    )
    with pytest.raises(SetupError, match="simulate = true"):
        select_backend(settings(), environ={})
    assert select_backend(settings(simulate=True), environ={}).simulated
    assert select_backend(settings(), environ=SIMULATED).simulated
    with pytest.raises(SetupError, match="simulate = true"):
        select_backend(settings(simulate=True), environ={SIM_ENV: "0"})
    # No pins and no sensors: nothing to import, the real layer is fine.
    bare = settings(i2c_sensors=[], status_led_pin=None, button_pin=None)
    assert not select_backend(bare, environ={}).simulated


def test_local_device_refuses_to_start_without_its_modules(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(backend_module, "is_raspberry_pi", lambda: True)
    monkeypatch.setattr(backend_module, "_importable", lambda name: name != "RPi.GPIO")
    agent = Agent()
    with pytest.raises(SetupError, match=r"pip install 'edgewire\[pi\]'"):
        LocalDevice(settings(simulate=True), tmp_path, agent.submit, agent.flush)


# -- layering ------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["edge/gpio/led.py", "edge/gpio/config.py", "edge/gpio/faces.py"])
def test_the_sans_io_parts_import_no_io(path: str) -> None:
    io_modules = {
        "asyncio",
        "socket",
        "threading",
        "time",
        "os",
        "pathlib",
        "RPi",
        "board",
        "busio",
    }
    imported: set[str] = set()
    for node in ast.walk(ast.parse((ROOT / path).read_text())):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert not imported & io_modules
