"""Which nodes of the city run live (real edge agents on emulated devices), and the edge
configuration each of them runs with.

The live subset is what issue 2 asks the demo to show on real parts: two air-quality
stations with an SDS011, two intersections with loop-detector pairs, one hospital ward
with its bed pads and the same hospital's ER door counter. It is picked from the city in
file order, so on the default city it is Hoan Kiem lake and Nga Tu So roadside (air),
Nga Tu So and Kim Lien (traffic), Bach Mai's respiratory ward and ER gate. Sensors of a
live node that the demo has no live device for (an MH-Z19B next to the SDS011) are
published by the lightweight publisher under the same node's credentials.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge.gpio.params import FIXED_PULL_UP
from urbanpulse.errors import ConfigError
from urbanpulse.simulate import City, NodeSpec, SensorSpec

# Drivers the demo has a live device for: firmware_bridge's SDS011 emulator on a pty, and
# gpiozero mock pins for the GPIO drivers.
SERIAL_LIVE = frozenset({"sds011"})
GPIO_LIVE = frozenset({"traffic_loop", "bed_pad", "door_counter"})
LIVE_DRIVERS = SERIAL_LIVE | GPIO_LIVE

# BCM lines handed out to a node's GPIO sensors (0 and 1 are the HAT ID EEPROM's).
FREE_PINS = tuple(range(2, 28))
# FIXED_PULL_UP (2 and 3, the I2C bus's pull-ups fixed on the board) go only to sensors
# wired with a pull-up: the agent's config check refuses any other pull there.
PULL_DOWN = frozenset({"traffic_loop"})  # loop cards drive their output high (sensor_table)
# Outputs of the node, by driver: a door counter's `test_pin`, which switches the beam's
# emitter off for the driver's self-test (active high). Not on 2 or 3: their fixed pull-ups
# would hold the line high, the emitter off, whenever the output is not driven.
OUTPUTS = {"door_counter": ("test",)}

# The live devices report faster than the city file's periods so that the terminal moves
# within seconds: an SDS011 in continuous mode reports every second on its own (the city
# file's 30 s is a working period for the lightweight mode); counters close an interval
# every 10 s instead of 60 s; bed pads send a heartbeat every minute.
SERIAL_PERIOD_S = 2.0
COUNTER_INTERVAL_S = 10.0
BED_HEARTBEAT_S = 60.0

AIR_STATIONS = 2
INTERSECTIONS = 2


@dataclass(frozen=True)
class LiveSensor:
    spec: SensorSpec
    pins: dict[str, int]  # simulator pin name -> BCM line; empty for serial sensors
    outputs: dict[str, int] = field(default_factory=dict)  # OUTPUTS name -> BCM line

    @property
    def id(self) -> str:
        return self.spec.id


@dataclass(frozen=True)
class LiveNode:
    site: str
    node: str
    label: str
    sensors: tuple[LiveSensor, ...]

    @property
    def key(self) -> tuple[str, str]:
        return (self.site, self.node)


def labels(city: City) -> dict[tuple[str, str], str]:
    """A human name for each node: the hospital, intersection or station it belongs to."""
    out: dict[tuple[str, str], str] = {}
    for h in city.hospitals:
        for w in h.wards:
            out[(h.site, w.node)] = f"{h.name}, {w.name}"
        if h.er is not None:
            out[(h.site, h.er.node)] = f"{h.name}, ER entrance"
        if h.outpatient is not None:
            out.setdefault((h.site, h.outpatient.node), f"{h.name}, outpatient hall")
        for d in h.paraclinical:
            out.setdefault((h.site, d.node), f"{h.name}, {d.name}")
    for x in city.intersections:
        out[(x.site, x.node)] = x.name
    for s in city.air_stations:
        out.setdefault((s.site, s.node), f"{s.name} air station")
    return out


def _live_node(city: City, site: str, node: str, names: dict[tuple[str, str], str]) -> LiveNode:
    spec = city.node(site, node)
    free = list(FREE_PINS)
    sensors: list[LiveSensor] = []
    for s in spec.sensors:
        if s.driver not in LIVE_DRIVERS:
            continue
        pins = {}
        for name in s.pins:
            pin = next(p for p in free if s.driver not in PULL_DOWN or p not in FIXED_PULL_UP)
            free.remove(pin)
            pins[name] = pin
        outputs = {}
        for name in OUTPUTS.get(s.driver, ()):
            pin = next(p for p in free if p not in FIXED_PULL_UP)
            free.remove(pin)
            outputs[name] = pin
        sensors.append(LiveSensor(s, pins, outputs))
    return LiveNode(site, node, names.get((site, node), f"{site}/{node}"), tuple(sensors))


def _gpio_pins(spec: NodeSpec) -> int:
    return sum(len(s.pins) + len(OUTPUTS.get(s.driver, ()))
               for s in spec.sensors if s.driver in GPIO_LIVE)


def _fits(spec: NodeSpec) -> bool:
    """Whether the node's GPIO sensors get pins of their own, pulled as they are wired
    (inputs with a pull-down and outputs not on the fixed pull-ups)."""
    down = sum((len(s.pins) if s.driver in PULL_DOWN else 0) + len(OUTPUTS.get(s.driver, ()))
               for s in spec.sensors if s.driver in GPIO_LIVE)
    return _gpio_pins(spec) <= len(FREE_PINS) and down <= len(FREE_PINS) - len(FIXED_PULL_UP)


def choose_live(city: City) -> list[LiveNode]:
    """The live subset, in file order; ConfigError when the city cannot provide it."""
    names = labels(city)
    picked: list[tuple[str, str]] = []
    stations = [(s.site, s.node) for s in city.air_stations
                if any(a.driver in SERIAL_LIVE for a in s.sensors)]
    if len(stations) < AIR_STATIONS:
        raise ConfigError("air_station", f"the demo needs {AIR_STATIONS} stations with an "
                          f"SDS011, the city has {len(stations)}")
    picked += stations[:AIR_STATIONS]
    crossings = [(x.site, x.node) for x in city.intersections
                 if _gpio_pins(city.node(x.site, x.node)) > 0 and _fits(city.node(x.site, x.node))]
    if len(crossings) < INTERSECTIONS:
        lanes = (len(FREE_PINS) - len(FIXED_PULL_UP)) // 2
        raise ConfigError("intersection", f"the demo needs {INTERSECTIONS} intersections of at "
                          f"most {lanes} lanes, the city has {len(crossings)}")
    picked += crossings[:INTERSECTIONS]
    ward = _ward_with_er(city)
    if ward is None:
        raise ConfigError("hospital", "the demo needs a hospital with an ER door and a ward of "
                          f"at most {len(FREE_PINS) - 1} beds")
    picked += [k for k in ward if k not in picked]
    return [_live_node(city, site, node, names) for site, node in picked]


def _ward_with_er(city: City) -> tuple[tuple[str, str], ...] | None:
    for h in city.hospitals:
        if h.er is None:
            continue
        for w in h.wards:
            nodes = {(h.site, w.node), (h.site, h.er.node)}
            if all(_fits(city.node(*k)) for k in nodes):
                return (h.site, w.node), (h.site, h.er.node)
    return None


def live_sensor_keys(nodes: Iterable[LiveNode]) -> frozenset[tuple[str, str, str]]:
    return frozenset((n.site, n.node, s.id) for n in nodes for s in n.sensors)


def lightweight_nodes(
    nodes: Iterable[NodeSpec], live: Iterable[LiveNode]
) -> tuple[list[tuple[str, str]], list[tuple[str, str, str]]]:
    """The nodes the lightweight publisher takes (every node that is not live), and the
    live nodes' sensors that no device reports, which nobody publishes.

    One MQTT client per node: the broker's nodes' listener gives every connection of a
    node's user the same client id, its user name, so the publisher connecting for a live
    node would end the agent's connection (and, with a clean start, empty its session)."""
    live = list(live)
    live_nodes = {n.key for n in live}
    live_sensors = live_sensor_keys(live)
    light = [(n.site, n.node) for n in nodes if (n.site, n.node) not in live_nodes]
    unreported = [(n.site, n.node, s.id) for n in nodes if (n.site, n.node) in live_nodes
                  for s in n.sensors if (n.site, n.node, s.id) not in live_sensors]
    return light, unreported


# --- the agents' configuration -------------------------------------------------------


def sensor_table(sensor: LiveSensor, ports: dict[str, str]) -> dict[str, Any]:
    """One `[[sensors]]` table. Simulator parameters map onto the drivers' keys
    (loop_spacing_m, the distance between the loops' leading edges, is the driver's
    loop_distance_m). The wiring matches how the emulation drives the pins: loop cards
    drive their output high on presence; door beams and bed-pad contacts pull the line
    low when broken or loaded, and a door's closed loopback pair pulls its line low; a
    door's test output switches its emitter off while high (the pin player darkens the
    beam then, `pins.PinPlayer`)."""
    spec = sensor.spec
    table: dict[str, Any] = {"id": spec.id, "driver": spec.driver}
    p = spec.params
    if spec.driver == "sds011":
        # warmup_s = 0: the demo's emulator gives stable values at once, and readings
        # flagged warmup for the driver's default 30 s would keep the terminal's
        # aggregates still for the first half minute of a demo meant to move in seconds.
        table.update(port=ports[spec.id], silence_timeout_s=10.0, warmup_s=0.0)
    elif spec.driver == "traffic_loop":
        table.update(pin=sensor.pins["loop1"], downstream_pin=sensor.pins["loop2"],
                     pull="down", active_state="high",
                     loop_distance_m=float(p["loop_spacing_m"]),
                     loop_length_m=float(p["loop_length_m"]),
                     interval_s=min(spec.period_s, COUNTER_INTERVAL_S))
    elif spec.driver == "door_counter":
        # Supervised, as the lightweight door readings are (every one carries `fault`):
        # the loopback pair ties its line to GND while the cable is whole, and a cut
        # cable lets the pull-up win (the simulator opens the loop during `cut_cable`).
        # Self-tested, as the fault bench's doors are: a receiver stuck clear (`stuck`)
        # fails the test and the cloud raises STUCK from the heartbeat.
        table.update(pin=sensor.pins["beam"], pull="up", active_state="low",
                     supervision="loopback", supervision_pin=sensor.pins["loopback"],
                     test_pin=sensor.outputs["test"], test_active_state="high",
                     interval_s=min(spec.period_s, COUNTER_INTERVAL_S))
    elif spec.driver == "bed_pad":
        table.update(pin=sensor.pins["pad"], pull="up", active_state="low",
                     occupied_when="closed", supervision="none",
                     exit_tolerance_s=float(p["exit_tolerance_s"]),
                     heartbeat_s=min(spec.period_s, BED_HEARTBEAT_S))
    else:  # pragma: no cover - choose_live only keeps LIVE_DRIVERS
        raise ConfigError(f"{spec.id}.driver", f"no live device for {spec.driver!r}")
    return table


def active_high(sensor: LiveSensor) -> bool:
    """Whether the emulation drives a pin of this sensor high when it is active."""
    return sensor.spec.driver == "traffic_loop"


def node_config(node: LiveNode, mqtt: dict[str, Any], state_dir: Path,
                ports: dict[str, str]) -> dict[str, Any]:
    return {
        "node": {"id": node.node, "site": node.site, "location": node.label,
                 "state_dir": str(state_dir)},
        "mqtt": mqtt,
        "outbox": {"batch_max_delay_s": 0.5},
        "gpio": {"backend": "mock"},
        # The demo's machine may have no NTP, and its nodes' clocks are simulated anyway:
        # with "kernel" every reading could be flagged clock_unsynced and make no aggregate.
        "agent": {"heartbeat_s": 10.0, "clock_check": "off"},
        "sensors": [sensor_table(s, ports) for s in node.sensors],
    }


def to_toml(config: dict[str, Any]) -> str:
    """Just enough TOML for `node_config`: tables of scalars and one array of tables."""
    out: list[str] = []
    for name, value in config.items():
        rows = value if isinstance(value, list) else [value]
        for row in rows:
            out.append(f"[[{name}]]" if isinstance(value, list) else f"[{name}]")
            out += [f"{k} = {_scalar(v)}" for k, v in row.items()]
            out.append("")
    return "\n".join(out)


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'
