"""The `[gpio]` table of the edge's config: the Raspberry Pi's own sensors,
status light and button, which the edge agent reads and drives itself.

Rule: whatever can be checked without touching the hardware is checked
here, once, when the config is loaded, and a bad value comes back as one
line naming the key (a pin given twice is otherwise a fault found only with
a meter).
"""

import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from edgewire import contract
from edgewire.errors import ConfigError

# What each kind of sensor reports, named as the boards name the same
# quantities (device/ew_bme280.py), so a dashboard treats both alike.
KIND_METRICS: dict[str, tuple[str, ...]] = {"bme280": ("temp_c", "rh", "pressure_hpa")}
BME280_ADDRESSES = (0x76, 0x77)  # SDO to GND, SDO to 3V3
# The 40-pin header's GPIOs, BCM numbering; GPIO0 and GPIO1 are the HAT ID
# EEPROM's bus, which the firmware probes at boot.
HEADER_GPIOS = range(2, 28)
I2C_PINS = {2: "SDA", 3: "SCL"}  # I2C bus 1, where blinka's board.SDA/SCL are
MAX_SENSORS = 8


def _about(text: str) -> Meta:
    return Meta(description=text)


class I2cSensor(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    kind: Annotated[Literal["bme280"], _about("the chip")]
    address: Annotated[int, Meta(ge=0, le=0x7F, description="its 7-bit I2C address")]
    prefix: Annotated[
        str,
        Meta(
            pattern=r"^([a-z][a-z0-9_]{0,15})?$",
            description="put before its metric names, to tell two alike apart",
        ),
    ] = ""

    def __post_init__(self) -> None:
        if self.kind == "bme280" and self.address not in BME280_ADDRESSES:
            raise ValueError(
                f"address: a bme280 answers at 0x76 or 0x77 (SDO low or high), "
                f"not {self.address:#04x}"
            )

    @property
    def label(self) -> str:
        """How logs and counters name it: `bme280@0x76`."""
        return f"{self.kind}@{self.address:#04x}"

    @property
    def metrics(self) -> tuple[str, ...]:
        return tuple(self.prefix + name for name in KIND_METRICS[self.kind])


class GpioSettings(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    device_id: Annotated[
        str,
        Meta(pattern=f"^{contract.DEVICE_ID_PATTERN}$", description="the Pi's own device id"),
    ]
    interval_s: Annotated[
        float, Meta(ge=0.1, le=86_400, description="seconds between two readings")
    ] = 10.0
    i2c_sensors: Annotated[
        tuple[I2cSensor, ...], Meta(max_length=MAX_SENSORS, description="sensors on I2C bus 1")
    ] = ()
    status_led_pin: Annotated[
        int | None, _about("BCM number of the status LED's GPIO (none: no LED)")
    ] = None
    button_pin: Annotated[
        int | None, _about("BCM number of the flush button's GPIO (none: no button)")
    ] = None
    button_bounce_ms: Annotated[
        int, Meta(ge=1, le=2000, description="edges this soon after a press are contact bounce")
    ] = 200
    simulate: Annotated[
        bool, _about("simulate the Pi's hardware where RPi.GPIO and blinka are missing")
    ] = False

    def __post_init__(self) -> None:
        pins = (("status_led_pin", self.status_led_pin), ("button_pin", self.button_pin))
        for name, pin in pins:
            if pin is None:
                continue
            if pin in (0, 1):
                raise ValueError(f"{name}: GPIO{pin} is kept for the HAT ID EEPROM")
            if pin not in HEADER_GPIOS:
                raise ValueError(
                    f"{name}: not a GPIO of the 40-pin header (BCM numbering, 2 to 27)"
                )
            if pin in I2C_PINS and self.i2c_sensors:
                raise ValueError(
                    f"{name}: GPIO{pin} is the I2C bus's {I2C_PINS[pin]}, which i2c_sensors use"
                )
        if self.button_pin is not None and self.button_pin == self.status_led_pin:
            raise ValueError(f"button_pin: GPIO{self.button_pin} is the status_led_pin too")
        seen: dict[int, I2cSensor] = {}
        source: dict[str, I2cSensor] = {}
        for sensor in self.i2c_sensors:
            if sensor.address in seen:
                raise ValueError(f"i2c_sensors: two sensors at {sensor.address:#04x}")
            seen[sensor.address] = sensor
            for metric in sensor.metrics:
                if metric in source:
                    raise ValueError(
                        f"i2c_sensors: {source[metric].label} and {sensor.label} both give "
                        f"{metric!r}: give one of them a prefix"
                    )
                source[metric] = sensor

    @property
    def pins(self) -> tuple[int, ...]:
        """The GPIOs this table claims, to set up and to clean up."""
        return tuple(p for p in (self.status_led_pin, self.button_pin) if p is not None)


_AT = re.compile(r"^(?P<problem>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.DOTALL)
_UNKNOWN = re.compile(r"^Object contains unknown field `(?P<key>[^`]+)`$")
_MISSING = re.compile(r"^Object missing required field `(?P<key>[^`]+)`$")
_FIELD_FIRST = re.compile(r"^(?P<field>[a-z_][a-z0-9_]*): (?P<rest>.*)$", re.DOTALL)
_STEP = re.compile(r"\.(\w+)|\[(\d+)\]")


def parse_gpio_settings(table: Mapping[str, Any]) -> GpioSettings:
    """The `[gpio]` table as settings, or ConfigError with one line:
    `[gpio] status_led_pin = 40: not a GPIO of the 40-pin header ...`."""
    try:
        return msgspec.convert(table, GpioSettings, strict=False)
    except msgspec.ValidationError as exc:
        raise ConfigError(describe_error(str(exc), table)) from None


def describe_error(message: str, table: Mapping[str, Any], where: str = "[gpio]") -> str:
    """msgspec's `Expected ... - at `$.x[0].y`` as `[gpio] x[0].y = value: Expected ...`."""
    at = _AT.match(message)
    problem, path = (at.group("problem"), at.group("path") or "") if at else (message, "")
    unknown = _UNKNOWN.match(problem)
    if unknown:
        inside = f" of {path.lstrip('.')}" if path else ""
        return f"{where} unknown key {unknown.group('key')!r}{inside}"
    missing = _MISSING.match(problem)
    if missing:
        path, problem = f"{path}.{missing.group('key')}", "missing, and it has no default"
    field_first = _FIELD_FIRST.match(problem)
    if field_first:  # a check in __post_init__ names its own key
        path, problem = f"{path}.{field_first.group('field')}", field_first.group("rest")
    name = path.lstrip(".")
    if not name:
        return f"{where} {problem}"
    found, value = _lookup(table, path)
    # Scalars only: a whole table or list would drown the line.
    shown = f" = {value!r}" if found and isinstance(value, str | int | float | bool) else ""
    return f"{where} {name}{shown}: {problem}"


def _lookup(table: Any, path: str) -> tuple[bool, Any]:
    value = table
    for key, index in _STEP.findall(path):
        if key and isinstance(value, Mapping) and key in value:
            value = value[key]
        elif index and isinstance(value, list | tuple) and int(index) < len(value):
            value = value[int(index)]
        else:
            return False, None
    return True, value
