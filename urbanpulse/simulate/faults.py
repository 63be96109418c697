"""How sensor faults change what a sensor produces.

Pulse sensors (loops, pads, door beams) get their faults as changes to the contact
timeline, so that the pin edges and the lightweight aggregates agree: a stuck sensor
holds the level it had, a cut loop cable fails safe to constant presence, false pulses
are added. Value sensors (serial air modules) get them as changes to the values.
Silence and cut cables on serial sensors mean no data.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from urbanpulse.simulate.events import Event
from urbanpulse.simulate.randomness import BoolArray, FloatArray, key_hash
from urbanpulse.simulate.timeline import Intervals, glitches

HOLDING = ("stuck", "silence", "cut_cable")
# The edge drivers' default minimum pulse length (`min_pulse_s`): a shorter active pulse
# is not a vehicle, a person or a patient but a glitch, counted in the reading's
# `glitches` field. A loop's shortest real detection in the city is about 0.18 s (a
# motorbike at speed), a door beam's 0.25 s; a bed pad is pressed for seconds.
MIN_PULSE_S = {"traffic_loop": 0.1, "door_counter": 0.1, "bed_pad": 0.5}


def fault_key(seed: int, event: Event) -> int:
    return key_hash(seed, "fault", event.type, event.site or "", event.node or "",
                    event.sensor or "", repr(event.start_s))


def pulse_timeline(base: Intervals, faults: Sequence[Event], t0: float, t1: float,
                   seed: int, level_at: Callable[[float], int], cut_level: int) -> Intervals:
    """The contact timeline over [t0, t1) as the faulty sensor shows it."""
    timeline = base
    for f in faults:
        if f.type == "spikes" and f.covers(t0, t1):
            timeline = timeline.union(glitches(fault_key(seed, f), max(t0, f.start_s),
                                               min(t1, f.end_s), f.params["rate_per_h"]))
    for f in sorted(faults, key=lambda e: e.start_s):
        if f.type not in HOLDING or not f.covers(t0, t1):
            continue
        if f.type == "stuck":
            level = level_at(f.start_s)
        elif f.type == "cut_cable":
            level = cut_level
        else:
            level = 0
        timeline = timeline.hold(f.start_s, f.end_s, level)
    return timeline


def in_faults(faults: Sequence[Event], types: Sequence[str], t: FloatArray) -> BoolArray:
    """Boolean mask of the times inside any fault of the given types."""
    mask: BoolArray = np.zeros(t.shape, dtype=bool)
    for f in faults:
        if f.type in types:
            mask |= (t >= f.start_s) & (t < f.end_s)
    return mask
