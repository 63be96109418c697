"""The node's configuration file (TOML), validated once at start-up into typed objects.

Validation (parse_config) does no I/O: paths are checked for shape, not existence, so that
a config can be checked on a laptop before it goes to the node. Loading a file
(load_config) also resolves the serial ports' links where they exist (check_devices), so
that two names of one device are caught on the node. Every error names the exact key.
What else this machine lacks (a port, a TLS file, the GPIO backend's module) is a warning
for `check-config` (machine_warnings: the file may be meant for another machine) and, for
the GPIO backend, a ConfigError at the agent's start (check_gpio_backend: exit code 2).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import math
import os
import posixpath
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from edge.clock_sync import CLOCK_CHECKS
from edge.drivers.base import DRIVERS, load_driver
from edge.gpio.errors import GpioBackendUnavailable
from edge.gpio.factory import ENV_BACKEND, module_available, read_board_model, resolve_backend
from urbanpulse.config_fields import (
    finite_seconds,
    only_known,
    plaintext_only_on_loopback,
    read_toml,
    typed,
    typed_id,
)
from urbanpulse.errors import ConfigError
from urbanpulse.wire.payload import SENSOR_ID, SENSOR_ID_MAX

T = TypeVar("T")


@dataclass(frozen=True)
class NodeConfig:
    id: str
    site: str
    location: str
    state_dir: Path


@dataclass(frozen=True)
class MqttConfig:
    host: str
    port: int
    username: str
    ca_file: Path | None
    password_file: Path | None
    cert_file: Path | None
    key_file: Path | None
    keepalive_s: int
    tls: bool
    delivery: str
    ack_timeout_s: float
    # The longest wait before a batch the cloud keeps not confirming is sent again (the
    # wait doubles from ack_timeout_s); None: RESEND_WAIT_MAX_FACTOR x ack_timeout_s.
    ack_timeout_max_s: float | None = None

    @property
    def resend_wait_max_s(self) -> float:
        if self.ack_timeout_max_s is None:
            return RESEND_WAIT_MAX_FACTOR * self.ack_timeout_s
        return self.ack_timeout_max_s


RESEND_WAIT_MAX_FACTOR = 8


@dataclass(frozen=True)
class OutboxConfig:
    max_rows: int
    max_age_s: float
    batch_max_readings: int
    batch_max_delay_s: float
    max_inflight: int
    live_window_s: float
    backlog_batches_per_s: float


@dataclass(frozen=True)
class GpioConfig:
    backend: str


@dataclass(frozen=True)
class SensorConfig:
    id: str
    driver: str
    params: Any


@dataclass(frozen=True)
class AgentConfig:
    node: NodeConfig
    mqtt: MqttConfig
    outbox: OutboxConfig
    gpio: GpioConfig
    sensors: tuple[SensorConfig, ...]
    heartbeat_s: float
    # How the agent learns whether the wall clock is synchronised (edge/clock_sync.py):
    # "kernel" (adjtimex) or "off" (readings never flagged clock_unsynced).
    clock_check: str = "kernel"


GPIO_BACKENDS = ("auto", "lgpio", "rpigpio", "mock")


def load_config(path: Path) -> AgentConfig:
    """The file, validated (parse_config), then checked against this machine's devices
    (check_devices): `edge run`, `edge check-config` and `edge status` all read it so."""
    config = parse_config(read_toml(path))
    check_devices(config)
    return config


def _positive(value: T, key: str) -> T:
    if value <= 0:  # type: ignore[operator]
        raise ConfigError(key, f"must be > 0, got {value!r}")
    return value


def _finite(value: float, key: str) -> float:
    """A number read as a float that is not a duration (a rate, days): TOML has nan and
    inf, which no comparison or int() conversion takes as meant."""
    if not math.isfinite(value):
        raise ConfigError(key, f"must be a finite number, got {value!r}")
    return value


MAX_AGE_DAYS_MAX = 3650  # ten years: beyond, the age in nanoseconds is out of any clock's range
KEEPALIVE_MAX_S = 65535  # MQTT's keep alive is a 16-bit number of seconds


def _table(raw: Mapping[str, Any], key: str, required: bool = True) -> Mapping[str, Any]:
    value = raw.get(key)
    if value is None and not required:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(key, "missing table" if value is None else "must be a table")
    return value


def config_path(table: Mapping[str, Any], key: str, prefix: str) -> Path | None:
    """A file path from the config: absolute or ./relative (the agent's, and a gateway's)."""
    value = typed(table, key, prefix, str, None)
    if value is None:
        return None
    if not value.startswith("/") and not value.startswith("."):
        raise ConfigError(f"{prefix}.{key}", f"must be an absolute or ./relative path, got {value!r}")
    return Path(value)


def _seconds(table: Mapping[str, Any], key: str, prefix: str, default: float) -> float:
    """A positive, finite duration (nan would make a wait that never ends: a partial batch
    never due, no heartbeat)."""
    full = f"{prefix}.{key}"
    return _positive(finite_seconds(typed(table, key, prefix, float, default), full), full)


# dashboards/provisioning/alerting/urbanpulse.yaml, "Node offline": no online heartbeat
# in 5 minutes; two heartbeats at least fit in them.
HEARTBEAT_MAX_S = 120.0


# A DNS name (labels of letters, digits, '-', '_' as some LANs use; a trailing dot allowed)
_HOSTNAME = re.compile(r"(?=.{1,254}\Z)([A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?\.?)+")


def mqtt_host(value: str, table: str = "mqtt") -> str:
    """A host name or an IP address, as the MQTT client connects to it: anything else
    (a URL, `host:port`) fails its name lookup at every reconnect, for ever. `table` names
    the config table it came from (`mqtt`, or a gateway's `site_mqtt` and `cloud_mqtt`)."""
    key = f"{table}.host"
    if "://" in value:
        raise ConfigError(key, f"a host name or an IP address, not a URL, got {value!r}: drop the "
                          f"scheme (TLS is {table}.tls, the port {table}.port)")
    if value.startswith("[") and value.endswith("]"):
        raise ConfigError(key, f"write an IPv6 address without brackets, got {value!r}")
    try:
        ipaddress.ip_address(value)
        return value
    except ValueError:
        pass
    if _HOSTNAME.fullmatch(value) and ".." not in value:
        return value
    if value.count(":") == 1 and _HOSTNAME.fullmatch(value.partition(":")[0]):
        raise ConfigError(key, f"a host name or an IP address, got {value!r}: the port goes in "
                          f"{table}.port")
    raise ConfigError(key, f"must be a host name or an IP address, got {value!r}")


def _keepalive(value: int) -> int:
    _positive(value, "mqtt.keepalive_s")
    if value > KEEPALIVE_MAX_S:
        raise ConfigError("mqtt.keepalive_s", f"must be <= {KEEPALIVE_MAX_S} (MQTT's keep alive is "
                          f"16 bits), got {value}")
    return value


# The Raspberry Pi's built-in UART, on BCM 14 (TXD) and 15 (RXD): serial0 is a link to
# whichever of ttyAMA0 (PL011) and ttyS0 (mini UART) the firmware put on those pins (on a
# Pi 3 or 4 the other drives the Bluetooth chip, no sensor's). Other UARTs (ttyAMA1.., a
# Pi 4's or 5's dtoverlay=uartN; a Pi 5's debug connector, ttyAMA10) are not checked.
BUILTIN_UART = ("/dev/serial0", "/dev/ttyAMA0", "/dev/ttyS0")
BUILTIN_UART_PINS = ((14, "TXD"), (15, "RXD"))
# dtparam=spi=on gives all five to the kernel's spidev, both chip selects included
SPI0_PINS = ((7, "CE1"), (8, "CE0"), (9, "MISO"), (10, "MOSI"), (11, "SCLK"))
SHARED = "one sensor's only (a second driver could never open it)"
SHARED_UART = ("the built-in UART's pins are one sensor's (a GPIO device on them takes them from "
               "the UART, or reads its bytes as pulses; /dev/serial0 is ttyAMA0 or ttyS0)")
SHARED_SPI = ("the SPI0 bus's pins are its ADCs' (the bed mats'), shared by them only (a GPIO "
              "device on them takes them from the bus: every mat of the node reads garbage)")
SPI0 = ", the SPI0 bus on GPIO 7-11"


def _claims(params: Any) -> list[tuple[str, str, str, str]]:
    """What a sensor's driver opens that no other sensor's can open too, as (resource,
    how to say it, key under the sensor's table): every GPIO its params name (`pin`,
    `*_pin`, `*_pins`; inputs and door_counter's test output alike: gpiozero opens one
    device per pin, `GPIOPinInUse` for a second) and its serial `port` (a second open is
    busy, or two drivers would read each other's bytes). Pins of `params.pins` under no
    such key are claimed under `pins`, so that a driver's new pin key is not missed.
    A port of the built-in UART claims its GPIO 14 and 15 too; an ADC on the SPI0 bus
    (bed_mat) claims the bus's GPIO 7-11, which its other ADC inputs share. The last item
    of each is how to say the claim to a later sensor clashing with it ("" when nothing to
    add; `SPI0` for the bus's pins)."""
    claims: list[tuple[str, str, str, str]] = []
    named: set[int] = set()

    def pin(value: int, key: str) -> None:
        named.add(value)
        claims.append((f"gpio {value}", f"GPIO {value}", key, ""))

    for field in dataclasses.fields(params):
        value = getattr(params, field.name)
        if field.name == "port" and isinstance(value, str):
            # the same device written another way; a symlink (by-id) is resolved by
            # check_devices, on the node (validation does no I/O)
            path = posixpath.normpath(value)
            shown = repr(value) if path == value else f"{value!r} ({path})"
            claims.append((f"port {path}", f"serial port {shown}", "port", ""))
            if path in BUILTIN_UART:
                for number, line in BUILTIN_UART_PINS:
                    claims.append((f"gpio {number}",
                                   f"GPIO {number} ({line} of the built-in UART {value!r})", "port",
                                   f", the built-in UART {value!r} on GPIO 14 and 15"))
        elif (field.name == "pin" or field.name.endswith("_pin")) and type(value) is int:
            pin(value, field.name)
        elif field.name.endswith("_pins") and isinstance(value, tuple):
            for j, each in enumerate(value):
                if type(each) is int:
                    pin(each, f"{field.name}[{j}]")
    for each in getattr(params, "pins", ()):
        if each not in named:
            pin(each, "pins")
    # Other things a driver opens on the GPIO header, as (resource, how to say it, key): an
    # ADC input on the SPI bus (bed_mat), shared by its sensors, each on its own channel.
    resources = getattr(params, "resources", ())
    for resource, said, key in resources:
        claims.append((resource, said, key, ""))
    if any(resource.startswith("gpio spi0.") for resource, _, _ in resources):
        for number, line in SPI0_PINS:
            claims.append((f"gpio {number}", f"GPIO {number} ({line} of the SPI0 bus)",
                           "spi_device", SPI0))
    return claims


# upfw channel numbers (firmware_bridge/PROTOCOL.md): a board's channel n publishes as
# `<id>-<n>` unless its `names` names it (edge/drivers/upfw/mapping.py, UpfwMapper.sensor)
UPFW_CHANNELS = range(1, 256)


def _sensor_ids(key: str, sid: str, driver: str, params: Any) -> list[tuple[str, str, str, str]]:
    """The sensor ids a sensor holds, as (id, key under the sensor's table, how to say the
    id, how to say who holds it): its own, and for a upfw board each channel's (the
    driver's `<id>-<channel>`, or the id `names` gives it). A kiosk's queue codes are not
    known before the board sends them: `<id>-<code>` is checked by the driver, against the
    ids gathered here (UpfwParams.taken; docs/edge-config.md)."""
    if driver != "upfw":
        return [(sid, "id", f"sensor id {sid!r}", f"{key}.id (sensor {sid!r})")]
    names: Mapping[str, str] = params.names
    ids = [(sid, "id", f"sensor id {sid!r}", f"{key}.id (upfw sensor {sid!r})")]
    for n in UPFW_CHANNELS:
        if str(n) not in names:
            if len(f"{sid}-{n}") > SENSOR_ID_MAX:
                raise ConfigError(f"{key}.id", f"channel {n}'s sensor id '{sid}-{n}' is "
                                  f"{len(sid) + 1 + len(str(n))} characters: the wire contract's "
                                  f"sensor ids have at most {SENSOR_ID_MAX} (the cloud would reject "
                                  "every reading of the channel); give the board an id of at most "
                                  f"{SENSOR_ID_MAX - 4}, or name its channels in {key}.names")
            ids.append((f"{sid}-{n}", "id", f"channel {n}'s sensor id '{sid}-{n}' (upfw sensor {sid!r})",
                        f"{key}.id (upfw sensor {sid!r}, its channel {n} unless {key}.names names it)"))
    for ch, name in names.items():
        ids.append((name, f"names.{ch}", f"channel {ch}'s sensor id {name!r} (upfw sensor {sid!r})",
                    f"{key}.names.{ch} (upfw sensor {sid!r}, its channel {ch})"))
    return ids


def parse_config(raw: Mapping[str, Any]) -> AgentConfig:
    only_known(raw, {"node", "mqtt", "outbox", "gpio", "sensors", "agent"}, "")
    node_t = _table(raw, "node")
    only_known(node_t, {"id", "site", "location", "state_dir"}, "node")
    node_id = typed_id(node_t, "id", "node", "node")
    site = typed_id(node_t, "site", "node", "site")
    state_dir = config_path(node_t, "state_dir", "node") or Path("/var/lib/urbanpulse")
    node = NodeConfig(node_id, site, typed(node_t, "location", "node", str, ""), state_dir)

    m = _table(raw, "mqtt")
    only_known(m, {"host", "port", "username", "ca_file", "password_file", "cert_file", "key_file",
                 "keepalive_s", "tls", "delivery", "ack_timeout_s", "ack_timeout_max_s"}, "mqtt")
    delivery = typed(m, "delivery", "mqtt", str, "cloud")
    if delivery not in ("cloud", "broker"):
        raise ConfigError("mqtt.delivery", f"must be 'cloud' or 'broker', got {delivery!r}")
    ack_timeout = _positive(finite_seconds(typed(m, "ack_timeout_s", "mqtt", float, 120.0),
                                    "mqtt.ack_timeout_s"), "mqtt.ack_timeout_s")
    ack_timeout_max = finite_seconds(typed(m, "ack_timeout_max_s", "mqtt", float,
                                    RESEND_WAIT_MAX_FACTOR * ack_timeout), "mqtt.ack_timeout_max_s")
    if ack_timeout_max < ack_timeout:
        raise ConfigError("mqtt.ack_timeout_max_s",
                          f"must be >= mqtt.ack_timeout_s ({ack_timeout:g}), got {ack_timeout_max!r}")
    port = typed(m, "port", "mqtt", int, 8883)
    if not 0 < port < 65536:
        raise ConfigError("mqtt.port", f"must be 1-65535, got {port}")
    mqtt = MqttConfig(
        host=mqtt_host(typed(m, "host", "mqtt", str)),
        port=port,
        username=typed(m, "username", "mqtt", str, f"{site}.{node_id}"),
        ca_file=config_path(m, "ca_file", "mqtt"),
        password_file=config_path(m, "password_file", "mqtt"),
        cert_file=config_path(m, "cert_file", "mqtt"),
        key_file=config_path(m, "key_file", "mqtt"),
        keepalive_s=_keepalive(typed(m, "keepalive_s", "mqtt", int, 30)),
        tls=typed(m, "tls", "mqtt", bool, True),
        delivery=delivery,
        ack_timeout_s=ack_timeout,
        ack_timeout_max_s=ack_timeout_max,
    )
    if mqtt.password_file is None and mqtt.cert_file is None:
        raise ConfigError("mqtt.password_file", "give password_file, or cert_file and key_file")
    if (mqtt.cert_file is None) != (mqtt.key_file is None):
        raise ConfigError("mqtt.key_file", "cert_file and key_file go together")
    if mqtt.tls and mqtt.ca_file is None:
        raise ConfigError("mqtt.ca_file", "missing: TLS is on (set tls = false only on a lab bench)")
    plaintext_only_on_loopback(mqtt.tls, mqtt.host, "mqtt.tls")

    o = _table(raw, "outbox", required=False)
    only_known(o, {"max_rows", "max_age_days", "batch_max_readings", "batch_max_delay_s",
                 "max_inflight", "live_window_s", "backlog_batches_per_s"}, "outbox")
    batch_max = _positive(typed(o, "batch_max_readings", "outbox", int, 500),
                          "outbox.batch_max_readings")
    if batch_max > 2000:
        raise ConfigError("outbox.batch_max_readings", "must be <= 2000 (the wire contract's limit)")
    inflight = _positive(typed(o, "max_inflight", "outbox", int, 20), "outbox.max_inflight")
    if inflight > 1000:
        raise ConfigError("outbox.max_inflight", "must be <= 1000 (MQTT packet ids are 16 bits)")
    max_age_days = _positive(_finite(typed(o, "max_age_days", "outbox", float, 7.0),
                                     "outbox.max_age_days"), "outbox.max_age_days")
    if max_age_days > MAX_AGE_DAYS_MAX:
        raise ConfigError("outbox.max_age_days", f"must be <= {MAX_AGE_DAYS_MAX}, got {max_age_days!r}")
    outbox = OutboxConfig(
        max_rows=_positive(typed(o, "max_rows", "outbox", int, 2_000_000), "outbox.max_rows"),
        max_age_s=86400 * max_age_days,
        batch_max_readings=batch_max,
        batch_max_delay_s=_seconds(o, "batch_max_delay_s", "outbox", 1.0),
        max_inflight=inflight,
        live_window_s=_seconds(o, "live_window_s", "outbox", 60.0),
        backlog_batches_per_s=_positive(
            _finite(typed(o, "backlog_batches_per_s", "outbox", float, 20.0),
                    "outbox.backlog_batches_per_s"), "outbox.backlog_batches_per_s"
        ),
    )

    g = _table(raw, "gpio", required=False)
    only_known(g, {"backend"}, "gpio")
    backend = typed(g, "backend", "gpio", str, "auto")
    if backend not in GPIO_BACKENDS:
        raise ConfigError("gpio.backend", f"must be one of {', '.join(GPIO_BACKENDS)}, got {backend!r}")

    a = _table(raw, "agent", required=False)
    only_known(a, {"heartbeat_s", "clock_check"}, "agent")
    heartbeat = _seconds(a, "heartbeat_s", "agent", 30.0)
    if heartbeat > HEARTBEAT_MAX_S:
        raise ConfigError("agent.heartbeat_s", f"must be <= {HEARTBEAT_MAX_S:g}, got {heartbeat:g}: "
                          "the cloud's \"Node offline\" alert fires after 5 minutes without an "
                          "online heartbeat, which must come often enough not to trip it")
    clock_check = typed(a, "clock_check", "agent", str, "kernel")
    if clock_check not in CLOCK_CHECKS:
        raise ConfigError("agent.clock_check",
                          f"must be one of {', '.join(CLOCK_CHECKS)}, got {clock_check!r}")

    sensors_raw = raw.get("sensors", [])
    if not isinstance(sensors_raw, list) or not sensors_raw:
        raise ConfigError("sensors", "give at least one [[sensors]] table")
    sensors: list[SensorConfig] = []
    seen: set[str] = set()
    held: dict[str, tuple[str, str]] = {}  # pin or port -> ("sensors[i].<key> (sensor 'id')", note)
    published: dict[str, tuple[int, str, str]] = {}  # sensor id -> (i, key, who holds it)
    for i, s in enumerate(sensors_raw):
        key = f"sensors[{i}]"
        if not isinstance(s, dict):
            raise ConfigError(key, "must be a table")
        sid = typed(s, "id", key, str)
        if not SENSOR_ID.fullmatch(sid):
            raise ConfigError(f"{key}.id", f"{sid!r}: use 1-64 of a-z, 0-9, '_', '.', '-' "
                              "(the wire contract's sensor ids)")
        if sid in seen:
            raise ConfigError(f"{key}.id", f"duplicate sensor id {sid!r}")
        seen.add(sid)
        driver = typed(s, "driver", key, str)
        if driver not in DRIVERS:
            raise ConfigError(f"{key}.driver", f"unknown driver {driver!r} (known: {', '.join(DRIVERS)})")
        try:
            module = load_driver(driver)
        except ModuleNotFoundError as exc:
            raise ConfigError(f"{key}.driver", f"driver {driver!r} is not available: {exc}") from exc
        params = module.parse_params({k: v for k, v in s.items() if k not in ("id", "driver")}, key)
        for resource, said, name, note in _claims(params):
            if resource in held:
                holder, held_note = held[resource]
                if note == held_note == SPI0:
                    continue  # another input of the bus's ADCs
                why = (SHARED_SPI if SPI0 in (note, held_note)
                       else SHARED_UART if note or held_note else SHARED)
                raise ConfigError(f"{key}.{name}", f"{said} is already used by {holder}: {why}")
            held[resource] = (f"{key}.{name} (sensor {sid!r}{note})", note)
        for pid, name, said, who in _sensor_ids(key, sid, driver, params):
            if pid in published:
                j, other, holder = published[pid]
                # a board may name a channel as itself: the board's own id publishes nothing
                if not (j == i and "id" in (name, other) and pid == sid):
                    raise ConfigError(f"{key}.{name}", f"{said} is already used by {holder}: "
                                      "two devices' readings would be mixed under one sensor id")
            published[pid] = (i, name, who)
        sensors.append(SensorConfig(sid, driver, params))
    # A kiosk's queue codes come only from the board: its driver checks `<id>-<code>` against
    # these when a code comes (edge/drivers/upfw/mapping.py, UpfwMapper.queue_sensor).
    for i, s in enumerate(sensors):
        if s.driver == "upfw":
            taken = {pid: who for pid, (j, name, who) in published.items()
                     if j != i or name != "id"}  # not its own id and channels: its names are
            sensors[i] = dataclasses.replace(s, params=dataclasses.replace(s.params, taken=taken))
    return AgentConfig(node, mqtt, outbox, GpioConfig(backend), tuple(sensors), heartbeat,
                       clock_check)


def check_devices(config: AgentConfig) -> None:
    """What parse_config leaves out because it does no I/O, for the node itself to run at
    start-up: two sensors whose serial ports are one device under two names (a
    `/dev/serial/by-id/...` link and the `/dev/ttyUSB0` it points to; `/dev/serial0` and the
    UART it points to) are refused naming both keys. Both drivers would open it: one fails
    at every start ("port busy"), and which one gets the device can change from a start to
    the next, its readings then going out under the other sensor's id. Links are resolved
    as they stand now; a port that does not exist (yet) is compared as written."""
    seen: dict[str, str] = {}
    for i, s in enumerate(config.sensors):
        port = getattr(s.params, "port", None)
        if not isinstance(port, str):
            continue
        device = os.path.realpath(port)
        if device in seen:
            raise ConfigError(f"sensors[{i}].port",
                              f"{port!r} is the device {device}, already used by {seen[device]}: "
                              f"{SHARED}; remove one, and write ports by their by-id names throughout")
        seen[device] = f"sensors[{i}].port (sensor {s.id!r}, {port!r})"


def gpio_sensor_keys(config: AgentConfig) -> list[str]:
    """For each sensor on GPIO pins, the key of its first pin (`sensors[0].pin (sensor
    'bed-01')`), in order: a node with none never makes a pin factory (a built-in UART's
    pins are the serial driver's, not gpiozero's)."""
    keys: list[str] = []
    for i, s in enumerate(config.sensors):
        pins = [name for resource, _said, name, _note in _claims(s.params)
                if resource.startswith("gpio ") and name != "port"]
        if pins:
            keys.append(f"sensors[{i}].{pins[0]} (sensor {s.id!r})")
    return keys


GPIO_BACKEND_HELP = ("install it into the agent's Python: `pip install 'urbanpulse[edge]'` brings "
                     "lgpio on a Raspberry Pi (aarch64 or armv7l) with Python 3.11-3.12; "
                     "elsewhere docs/edge-config.md, \"GPIO backend\"")


def check_gpio_backend(config: AgentConfig, *, env: Mapping[str, str] | None = None,
                       board_model: str | None = None,
                       available: Callable[[str], bool] = module_available) -> None:
    """The GPIO backend `[gpio] backend` names (or URBANPULSE_GPIO_BACKEND) can run on this
    machine, if any sensor uses a GPIO pin: its Python module is installed (looked up, not
    imported) and it suits the board (not RPi.GPIO on a Pi 5). A ConfigError naming
    `gpio.backend` otherwise: no restart would install the module, so the agent stops with
    exit code 2 instead of restarting every GPIO driver for ever. No pin is opened."""
    users = gpio_sensor_keys(config)
    if not users:
        return
    environ = os.environ if env is None else env
    model = read_board_model() if board_model is None else board_model
    try:
        resolve_backend(config.gpio.backend, env=environ, board_model=model, available=available)
    except GpioBackendUnavailable as exc:
        by_env = f" ({ENV_BACKEND}={environ[ENV_BACKEND]!r})" if environ.get(ENV_BACKEND) else ""
        more = f" and {len(users) - 1} other GPIO sensors" if len(users) > 1 else ""
        raise ConfigError("gpio.backend", f"{config.gpio.backend!r}{by_env} cannot run here: {exc}; "
                          f"needed by {users[0]}{more}: {GPIO_BACKEND_HELP}") from exc


def machine_warnings(config: AgentConfig, *, env: Mapping[str, str] | None = None) -> list[str]:
    """What this machine lacks that the config names, for `check-config` to warn about (the
    file may be checked on a laptop for a node): a serial port or a TLS or credential file
    that does not exist here (the agent runs without them, its readings kept: a driver whose
    port is missing is restarted until the device appears, the MQTT files are read again on
    every reconnect), and a GPIO backend that cannot run here (the agent stops, exit code 2).
    Each as `<key>: why`."""
    warnings: list[str] = []
    for i, s in enumerate(config.sensors):
        port = getattr(s.params, "port", None)
        if isinstance(port, str) and not os.path.exists(port):
            warnings.append(f"sensors[{i}].port: {port!r} does not exist on this machine (sensor "
                            f"{s.id!r}: its driver fails and is restarted until the device appears)")
    m = config.mqtt
    for name, path in (("ca_file", m.ca_file if m.tls else None), ("password_file", m.password_file),
                       ("cert_file", m.cert_file), ("key_file", m.key_file)):
        if path is not None and not path.exists():
            warnings.append(f"mqtt.{name}: {str(path)!r} does not exist on this machine (the agent "
                            "keeps its readings and does not connect until it can read it)")
    try:
        check_gpio_backend(config, env=env)
    except ConfigError as exc:
        warnings.append(f"{exc} (on this machine `edge run` stops at start, exit code 2)")
    return warnings
