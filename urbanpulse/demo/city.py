"""The demo's small city: who the nodes are, their sensors, and what drives the mock pins.

Serial sensors are emulated on pseudo-terminals by firmware_bridge; GPIO sensors are
gpiozero mock pins that a driver thread toggles with realistic timing (vehicles over a
pair of loops, people through a door, patients in and out of bed).
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class DemoNode:
    site: str
    node: str
    label: str
    sensors_toml: str
    pins: dict[str, int] = field(default_factory=dict)


def air_values(seed: int, base: float) -> Callable[[], tuple[float, float]]:
    """PM2.5/PM10 around Hanoi's typical levels with a slow swing and noise."""
    rng = random.Random(seed)
    start = time.monotonic()

    def values() -> tuple[float, float]:
        t = time.monotonic() - start
        pm25 = max(1.0, base + 12 * math.sin(t / 40) + rng.gauss(0, 3))
        return round(pm25, 1), round(pm25 * 1.6 + rng.gauss(0, 4), 1)

    return values


def city_nodes(serial_ports: dict[str, str]) -> list[DemoNode]:
    def sds(sensor: str) -> str:
        return (f'[[sensors]]\nid = "{sensor}"\ndriver = "sds011"\nport = "{serial_ports[sensor]}"\n'
                'silence_timeout_s = 10.0\n')

    def loop(sensor: str, pin: int, down: int) -> str:
        return (f'[[sensors]]\nid = "{sensor}"\ndriver = "traffic_loop"\npin = {pin}\n'
                f'downstream_pin = {down}\npull = "down"\nactive_state = "high"\n'
                'loop_distance_m = 4.0\nloop_length_m = 2.0\n'
                'interval_s = 5.0\n')

    def bed(sensor: str, pin: int) -> str:
        return (f'[[sensors]]\nid = "{sensor}"\ndriver = "bed_pad"\npin = {pin}\npull = "up"\n'
                'active_state = "low"\noccupied_when = "closed"\nsupervision = "none"\n'
                'exit_tolerance_s = 3\nheartbeat_s = 10\n')

    door = ('[[sensors]]\nid = "er-door"\ndriver = "door_counter"\npin = 20\npull = "up"\n'
            'active_state = "low"\ninterval_s = 5\n')
    beds = {f"bed-{i:02d}": 10 + i for i in range(1, 7)}
    return [
        DemoNode("hn-bachmai", "ward-a", "Bach Mai hospital, ward A",
                 "\n".join(bed(b, p) for b, p in beds.items()) + "\n" + door,
                 {**beds, "er-door": 20}),
        DemoNode("hn-hoankiem", "aq-01", "Hoan Kiem air station", sds("pm-hoankiem")),
        DemoNode("hn-caugiay", "aq-02", "Cau Giay air station", sds("pm-caugiay")),
        DemoNode("hn-hoankiem", "x-01", "Trang Tien x Hang Bai", loop("lane-1", 5, 6),
                 {"lane-1": 5, "lane-1.down": 6}),
        DemoNode("hn-caugiay", "x-02", "Xuan Thuy x Cau Giay", loop("lane-1", 5, 6),
                 {"lane-1": 5, "lane-1.down": 6}),
    ]


class PinDriver(threading.Thread):
    """Toggles mock pins like the street would, until stopped."""

    def __init__(self, seed: int) -> None:
        super().__init__(name="demo-pins", daemon=True)
        self.rng = random.Random(seed)
        self.stop_event = threading.Event()
        self.loops: list[tuple[Any, int, int]] = []
        self.beds: list[tuple[Any, int]] = []
        self.doors: list[tuple[Any, int]] = []

    def add_bed(self, factory: Any, pin: int) -> None:
        self.beds.append((factory, pin))

    def add_door(self, factory: Any, pin: int) -> None:
        self.doors.append((factory, pin))

    def add_loop_pair_on(self, factory: Any, pin: int, downstream: int) -> None:
        self.loops.append((factory, pin, downstream))

    def run(self) -> None:
        # Once the agents have set their pull-ups: most beds start occupied.
        self.stop_event.wait(1.0)
        for factory, pin in self.beds:
            if self.rng.random() < 0.7:
                factory.pin(pin).drive_low()  # contact closed: a patient in bed
        while not self.stop_event.is_set():
            for factory, pin, down in self.loops:
                if self.rng.random() < 0.5:
                    self._vehicle(factory, pin, down)
            for factory, pin in self.beds:
                if self.rng.random() < 0.02:  # admission or discharge
                    p = factory.pin(pin)
                    p.drive_high() if p.state == 0 else p.drive_low()
            for factory, pin in self.doors:
                if self.rng.random() < 0.3:  # someone walks through the beam
                    factory.pin(pin).drive_low()
                    self.stop_event.wait(0.15)
                    factory.pin(pin).drive_high()
            self.stop_event.wait(self.rng.uniform(0.3, 0.9))

    def _vehicle(self, factory: Any, pin: int, down: int) -> None:
        speed = self.rng.uniform(20, 45) / 3.6
        length = self.rng.choice([1.9, 1.9, 1.9, 4.5, 4.5, 11.0])
        on_time = (length + 2.0) / speed
        gap = 4.0 / speed
        up, dn = factory.pin(pin), factory.pin(down)
        up.drive_high()
        if self.stop_event.wait(min(gap, on_time)):
            return
        if gap < on_time:
            dn.drive_high()
            self.stop_event.wait(on_time - gap)
            up.drive_low()
            self.stop_event.wait(gap)
            dn.drive_low()
        else:
            up.drive_low()
            self.stop_event.wait(gap - on_time)
            dn.drive_high()
            self.stop_event.wait(on_time)
            dn.drive_low()
