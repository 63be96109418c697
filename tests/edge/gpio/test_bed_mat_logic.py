"""bed_mat logic on golden sample sequences: occupied with its exit tolerance, load, motion
(a breathing body against an empty bed and a frozen ADC), single-sample glitches."""

import math

import pytest

from edge.drivers.bed_mat.logic import BedMatLogic, MatReading, MatSettings

HZ = 10.0
EMPTY = 0.05  # an empty bed: the conditioning's bias (the README's wiring)


def run(levels: list[float], settings: MatSettings, t0: float = 100.0) -> list[MatReading]:
    logic = BedMatLogic(settings)
    out: list[MatReading] = []
    for i, level in enumerate(levels):
        out += logic.feed(level, t0 + i / HZ)
    return out


def breathing(n: int, base: float = 0.6, amp: float = 0.02, period_s: float = 4.0) -> list[float]:
    return [base + amp * math.sin(2 * math.pi * i / HZ / period_s) for i in range(n)]


def test_golden_entry_exit_with_tolerance() -> None:
    s = MatSettings(min_load_s=0.5, exit_tolerance_s=2.0, heartbeat_s=3600.0)
    # 1 s empty, 3 s on the bed, 1 s off (within the tolerance), 1 s on, 3 s off
    levels = [EMPTY] * 10 + [0.6] * 30 + [EMPTY] * 10 + [0.6] * 10 + [EMPTY] * 30
    got = [(round(r.t - 100.0, 1), r.values()["occupied"], r.samples) for r in run(levels, s)]
    # the start-up reading; occupied 0.5 s after the load (the jump is held one sample to
    # tell it from a glitch); free 2 s after the last exit, never after the short one
    assert got == [(0.0, 0, 1), (1.5, 1, 15), (8.0, 0, 65)]


def test_hysteresis_between_free_and_occupied_levels() -> None:
    s = MatSettings(occupied_level=0.25, free_level=0.15, min_load_s=0.0,
                    exit_tolerance_s=0.0, glitch_level=0.5, heartbeat_s=3600.0)
    # 0.2 is between the levels: it keeps what was sensed, on the way up and down
    levels = [EMPTY, 0.2, 0.2, 0.3, 0.2, 0.2, 0.1, 0.2]
    got = [(round(r.t - 100.0, 1), r.values()["occupied"]) for r in run(levels, s)]
    assert got == [(0.0, 0), (0.3, 1), (0.6, 0)]


def test_load_and_motion_of_a_breathing_patient_an_empty_bed_and_a_frozen_adc() -> None:
    s = MatSettings(heartbeat_s=60.0)
    patient = run(breathing(1300), s)
    beats = [r for r in patient if r.samples >= 590]
    assert len(beats) == 2
    for r in beats:
        assert r.occupied
        assert r.values()["load"] == pytest.approx(0.6, abs=0.002)
        # a sine of amplitude 0.02 through a 5 s high-pass at 0.25 Hz: RMS ~0.0139
        assert 0.010 < r.motion < 0.015
    empty = run([0.05 + (0.001 if i % 3 == 0 else 0.0) for i in range(1300)], s)
    assert all(not r.occupied and r.motion < 0.001 for r in empty)
    assert all(r.motion > 0 for r in empty[1:])  # ADC noise: never exactly flat
    frozen = run([0.6] * 1300, s)
    assert [r.values() for r in frozen[1:]] == [{"occupied": 1, "load": 0.6, "motion": 0.0, "fault": 0}] * 2


def test_single_sample_glitches_are_counted_and_held_out() -> None:
    s = MatSettings(heartbeat_s=2.0, glitch_level=0.2)
    levels = [0.05] * 25
    levels[5] = levels[12] = 0.9   # two one-sample pulses
    got = run(levels, s)
    assert [r.values() for r in got] == [
        {"occupied": 0, "load": 0.05, "motion": 0.0, "fault": 0},
        {"occupied": 0, "load": 0.05, "motion": 0.0, "fault": 0, "glitches": 2},
    ]
    # a pulse of up to glitch_s too (3 samples, 0.2 s), counted once
    levels = [0.05] * 25
    levels[5:8] = [0.9, 0.95, 0.9]
    assert [r.values() for r in run(levels, s)][1] == {
        "occupied": 0, "load": 0.05, "motion": 0.0, "fault": 0, "glitches": 1}
    # under a patient too (a pad's closed contact shows none)
    levels = breathing(25)
    levels[9] = 1.0
    assert run(levels, s)[1].values()["glitches"] == 1
    # a jump that stays is a real load, not a glitch
    step = run([0.05] * 5 + [0.9] * 10, MatSettings(min_load_s=0.2, heartbeat_s=60.0))
    assert [r.values()["occupied"] for r in step] == [0, 1]
    assert all("glitches" not in r.values() for r in step)


def test_a_longer_pulse_passes_into_load_for_the_cloud_spike_rule() -> None:
    s = MatSettings(heartbeat_s=6.0, min_load_s=1.0)
    levels = [0.6] * 181
    for i in range(70, 75):  # five samples (0.5 s) at full scale: longer than glitch_s
        levels[i] = 1.0
    loads = [r.values()["load"] for r in run(levels, s)[1:]]
    assert loads == [0.6, pytest.approx(0.6 + 5 * 0.4 / 60), 0.6]  # flat ones: exactly 0.6


def test_settings_refuse_inverted_levels() -> None:
    with pytest.raises(ValueError, match="free_level < occupied_level"):
        MatSettings(occupied_level=0.2, free_level=0.3)
    with pytest.raises(ValueError, match="finite"):
        BedMatLogic(MatSettings()).feed(math.nan, 0.0)


def test_an_adc_frozen_under_a_breathing_patient_reads_exactly_flat() -> None:
    levels = breathing(1250)
    frozen_at = levels[600]
    levels[600:] = [frozen_at] * 650  # stuck from the second reading's start on
    got = run(levels, MatSettings(heartbeat_s=60.0))
    assert [r.values() for r in got[2:]] == [{"occupied": 1, "load": frozen_at, "motion": 0.0, "fault": 0}]
    assert got[1].motion > 0.01  # the live minute before


def test_golden_cut_cable_on_an_occupied_bed_then_mended() -> None:
    s = MatSettings(heartbeat_s=3600.0, fault_delay_s=1.0, exit_tolerance_s=2.0)
    # a patient 2 s, the cable cut (0) 3 s, mended while the patient is still there 1 s, then
    # the patient leaves (the bias) 3 s
    levels = breathing(20) + [0.0] * 30 + breathing(10) + [EMPTY] * 30
    got = [(round(r.t - 100.0, 1), r.values()["occupied"], r.values()["fault"])
           for r in run(levels, s)]
    # the cut's jump is held glitch_s (0.3 s) before it counts, from its first sample at 2.0 s;
    # fault at 3.0 s with occupied frozen; cleared at the first live sample (5.0 s); the exit
    # 2 s after the patient left at 6.0 s
    assert got == [(0.0, 1, 0), (3.0, 1, 1), (5.0, 1, 0), (8.0, 0, 0)]


def test_a_mat_cut_while_empty_reads_fault_with_occupied_frozen_free() -> None:
    s = MatSettings(heartbeat_s=1.0, fault_delay_s=1.0)
    # the bias, then 0 (unplugged) for 3.5 s, then the bias again
    levels = [EMPTY + (0.001 if i % 3 == 0 else 0.0) for i in range(10)] + [0.0] * 35 \
        + [EMPTY] * 20
    got = [(round(r.t - 100.0, 1), r.values()) for r in run(levels, s)]
    faults = [(t, v["occupied"], v["fault"]) for t, v in got]
    # first 0 at 1.0 s: fault at 2.0 s (a reading at once), heartbeats carry it, clear at 4.5 s
    assert (2.0, 0, 1) in faults
    assert [f for t, _, f in faults if 2.0 <= t < 4.5] == [1, 1, 1]
    assert [f for t, _, f in faults if t < 2.0 or t >= 4.5] == [0] * (len(faults) - 3)
    assert (4.5, 0, 0) in faults
    assert all(o == 0 for _, o, _ in faults)
    # while cut: load exactly 0 and no motion, as the cloud's stuck rule would see it later
    assert [v["load"] for t, v in got if 2.5 <= t < 4.5] == [0.0, 0.0]


def test_a_short_pinned_at_full_scale_is_a_fault_a_short_pulse_is_not() -> None:
    s = MatSettings(heartbeat_s=3600.0, fault_delay_s=1.0, min_load_s=0.5)
    # patient, then 0.8 s at full scale (a hard movement: under fault_delay_s), patient, then
    # the signal shorted to the supply 2 s
    levels = breathing(20) + [1.0] * 8 + breathing(20) + [1.0] * 20 + breathing(10)
    got = [(round(r.t - 100.0, 1), r.values()["occupied"], r.values()["fault"])
           for r in run(levels, s)]
    # the full-scale jumps are held glitch_s before they count, both ways: the 0.8 s one
    # comes back before fault_delay_s; the short from 4.8 s is a fault at 5.8 s, cleared at
    # the first live sample (6.8 s)
    assert got == [(0.0, 1, 0), (5.8, 1, 1), (6.8, 1, 0)]


def test_a_fault_at_start_up_is_reported_at_once() -> None:
    got = run([0.0] * 5 + [EMPTY] * 5, MatSettings(heartbeat_s=3600.0))
    assert [(round(r.t - 100.0, 1), r.values()["fault"]) for r in got] == [(0.0, 1), (0.5, 0)]


def test_without_supervision_no_fault_field_and_presence_follows_the_level() -> None:
    s = MatSettings(supervision="none", heartbeat_s=1.0, exit_tolerance_s=1.0)
    got = run(breathing(10) + [0.0] * 30, s)
    assert all("fault" not in r.values() for r in got)
    assert got[-1].values()["occupied"] == 0


def test_settings_refuse_supervision_levels_out_of_order() -> None:
    with pytest.raises(ValueError, match="fault_below < free_level"):
        MatSettings(fault_below=0.2)
    with pytest.raises(ValueError, match="occupied_level < fault_above"):
        MatSettings(fault_above=0.2)
    with pytest.raises(ValueError, match="none or bias"):
        MatSettings(supervision="loopback")  # type: ignore[arg-type]
