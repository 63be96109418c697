"""The GPIO drivers' counts of input they could not use (pulses too short to be a vehicle,
a person or a patient; a kiosk's calls with nobody waiting; a loop pair's onsets no speed
could be measured from) reach the heartbeat's `health.drivers.<id>.bad_input` and
`urbanpulse edge status`. Before, only `describe()` held them, which nothing on a deployed
node shows; a glitch reached the cloud only in a reading's `glitches`, and the kiosk's
(whose reading has no such field) nowhere. The real agent, on gpiozero MockFactory pins,
to the real broker."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from edge.agent import Agent
from edge.cli import main
from edge.config import load_config
from tests.agent_thread import agent_in_thread
from urbanpulse.testing import wait_for

SENSORS = """
[[sensors]]
id = "loop-1"
driver = "traffic_loop"
pin = 17
downstream_pin = 27
loop_distance_m = 5.0
interval_s = 1  # a pair's onsets are matched when an interval closes
debounce_s = 0.002
min_pulse_s = 0.3

[[sensors]]
id = "door-1"
driver = "door_counter"
pin = 22
debounce_s = 0.002
min_pulse_s = 0.3

[[sensors]]
id = "bed-1"
driver = "bed_pad"
pin = 23
debounce_s = 0.002
min_pulse_s = 0.5

[[sensors]]
id = "kiosk-1"
driver = "queue_kiosk"
issue_pin = 24
call_pins = [25]
debounce_s = 0.3
"""

EXPECTED = {
    "loop-1": {"glitches": 1, "unmatched_upstream": 0, "unmatched_downstream": 1,
               "implausible_length": 0},
    "door-1": {"glitches": 1},
    "bed-1": {"glitches": 1},
    "kiosk-1": {"glitches": 1, "empty_calls": 1},
}


def _bad_input(status: bytes, sensor: str) -> Any:
    health = json.loads(status).get("health") or {}
    return health.get("drivers", {}).get(sensor, {}).get("bad_input")


def test_gpio_glitches_and_ignored_calls_are_counted_in_the_heartbeat_and_edge_status(  # type: ignore[no-untyped-def]
        gpio, make_node_config, collector, capsys) -> None:
    path = make_node_config("hn-edge", "bad-input-gpio", SENSORS)
    seen = collector("hn-edge", "bad-input-gpio")
    agent = Agent(load_config(path), pin_factory=gpio.provider)
    pin = gpio.factory.pin

    def described(sensor: str) -> dict[str, Any]:
        driver = agent._running.get(sensor)
        return driver.describe() if driver is not None else {}

    def wait(predicate: Callable[[], bool], what: str) -> None:
        wait_for(predicate, 10, what, every_s=0.005)

    with agent_in_thread(agent):
        for sensor in EXPECTED:
            wait(lambda s=sensor: bool(described(s).get("running")), f"{sensor} running")
        # pins pulled up, signals active low: low and straight back high is a pulse too
        # short for the filters (min_pulse_s, or the kiosk's debounce)
        for number, sensor in ((17, "loop-1"), (22, "door-1"), (23, "bed-1"), (24, "kiosk-1")):
            p = pin(number)
            p.drive_low()
            p.drive_high()
            wait(lambda s=sensor: described(s).get("glitches") == 1, f"{sensor}'s glitch")
        # a vehicle on the downstream loop that never crossed the upstream one
        pin(27).drive_low()
        wait(lambda: described("loop-1").get("levels") == [False, True], "the lone onset")
        pin(27).drive_high()
        wait(lambda: described("loop-1").get("unmatched_downstream") == 1, "its interval")
        # a counter calls with nobody waiting
        pin(25).drive_low()
        wait(lambda: described("kiosk-1").get("signals", [])[1:] == [True], "the call")
        pin(25).drive_high()
        wait(lambda: described("kiosk-1").get("empty_calls") == 1, "the empty call")

        def counted() -> bool:
            return any(all(_bad_input(s, sensor) == want for sensor, want in EXPECTED.items())
                       for s in list(seen.statuses))

        wait_for(counted, 20, "a heartbeat with every driver's bad input")

    assert main(["status", "--config", str(path)]) == 0
    out = capsys.readouterr().out
    lines = {line.split(":")[0]: line for line in out.splitlines() if line.startswith("driver ")}
    assert lines["driver loop-1"].endswith("; bad input: glitches 1, unmatched_downstream 1"), out
    assert lines["driver door-1"].endswith("; bad input: glitches 1"), out
    assert lines["driver kiosk-1"].endswith("; bad input: glitches 1, empty_calls 1"), out
