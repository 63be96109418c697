"""What an analogue bed mat (edge/drivers/bed_mat) reports over a reading's interval.

The mat's level is an empty bed's bias plus the patient's weight while loaded, with the
body's breathing and movements on it and the ADC's noise. A reading carries `load`, the
mean level over its interval, and `motion`, the RMS of the high-passed level; both come
here from the loaded time of the interval, not from samples:

- load = bias + loaded share x the bed's body level + the mean's noise;
- motion = the RMS of the loaded share's body signal (breathing, and more in an interval
  where the patient got in or out) and of the ADC's noise.

Faults as the hardware shows them: a stuck mat (a frozen ADC, a crushed mat) holds the
level it had when it stuck, exactly, with no motion; a cut cable reads 0 (the ADC input
pulled down, the bias gone), no motion, and the driver's cable supervision flags it
(`fault` 1, occupied frozen: urbanpulse/simulate/ward.py); false pulses (spikes) are short
excursions of the signal that the driver counts in `glitches` whether the bed is occupied
or not (`glitch_count`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from urbanpulse.simulate.events import Event
from urbanpulse.simulate.faults import fault_key
from urbanpulse.simulate.randomness import FloatArray, IntArray, slot_normal, slot_uniform
from urbanpulse.simulate.timeline import Intervals, glitches

BIAS = 0.05  # an empty bed's level (0..1 of the ADC's full scale): the conditioning's bias
BODY = (0.35, 0.6)  # a patient's level above it, by bed (range)
BREATH_RMS = (0.006, 0.014)  # motion of a lying patient, by bed (range)
BREATH_SPREAD = 0.1  # its variation from a reading to the next (relative sd)
MOVE_RMS = 0.03  # extra motion in an interval where the patient got in or out
NOISE_RMS = 0.0005  # the ADC's noise (half an LSB and some): an empty bed's motion
LOAD_NOISE = 3e-5  # what varies in a reading's mean level (noise, breathing's phase)
SAMPLE_HZ, ADC_FULL = 10.0, 1023  # the driver's default rate; the MCP3008's full scale


def bed_levels(key: int) -> tuple[float, float]:
    """This bed's body level and breathing motion (one patient after another: the same)."""
    u = slot_uniform(key, np.array([0, 1], dtype=np.int64), 7)
    return (BODY[0] + (BODY[1] - BODY[0]) * float(u[0]),
            BREATH_RMS[0] + (BREATH_RMS[1] - BREATH_RMS[0]) * float(u[1]))


def mat_values(key: int, contact: Intervals, lo: FloatArray, hi: FloatArray
               ) -> tuple[FloatArray, FloatArray]:
    """(load, motion) of the readings covering [lo, hi) each, for a mat loaded over
    `contact` (its true contact, faults left to `frozen`)."""
    body, breath = bed_levels(key)
    span = np.maximum(hi - lo, 1e-9)
    share = np.clip(contact.on_time(lo, hi) / span, 0.0, 1.0)
    slots = np.round(hi * 1000.0).astype(np.int64)
    load = BIAS + share * body + LOAD_NOISE * slot_normal(key, slots, 0)
    # the mean of whole ADC codes, as the driver computes it: two readings' sums of codes
    # can be equal (the stuck rule on the load must take a run of them)
    codes = np.maximum(np.round(span * SAMPLE_HZ), 1.0) * ADC_FULL
    load = np.round(np.clip(load, 0.0, 1.0) * codes) / codes
    changed = (contact.count_starts(lo, hi) + _ends_within(contact, lo, hi)) > 0
    noise = NOISE_RMS * (0.8 + 0.4 * slot_uniform(key, slots, 3))
    # breathing's depth and the small movements of a lying patient differ from a reading to
    # the next (a tenth or so)
    body_motion = share * breath * (1.0 + BREATH_SPREAD * slot_normal(key, slots, 4))
    motion = np.sqrt(body_motion**2 + np.where(changed, MOVE_RMS, 0.0) ** 2 + noise**2)
    return load, motion


def _ends_within(contact: Intervals, lo: FloatArray, hi: FloatArray) -> IntArray:
    ends = np.sort(contact.ends)
    counts: IntArray = np.searchsorted(ends, hi) - np.searchsorted(ends, lo)
    return counts


def spike_pulses(seed: int, faults: Sequence[Event], lo: FloatArray, hi: FloatArray
                 ) -> IntArray:
    """False pulses of the spikes faults starting in each [lo, hi): the driver sees each,
    loaded or not (a pad's closed contact hides those under a patient)."""
    counts: IntArray = np.zeros(lo.shape, dtype=np.int64)
    if not lo.size:
        return counts
    for f in faults:
        if f.type == "spikes" and f.covers(float(lo[0]), float(hi[-1])):
            pulses = glitches(fault_key(seed, f), max(float(lo[0]), f.start_s),
                              min(float(hi[-1]), f.end_s), f.params["rate_per_h"])
            counts += pulses.count_starts(lo, hi)
    return counts
