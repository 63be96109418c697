"""bed_pad parse_params: every bad value names its exact key; the sample parses."""

import tomllib
from pathlib import Path

import pytest

import edge.drivers.bed_pad
from edge.drivers.bed_pad.driver import BedPadParams, parse_params
from edge.drivers.bed_pad.logic import BedPadLogic
from urbanpulse.errors import ConfigError

SAMPLE = Path(edge.drivers.bed_pad.__file__).parent / "sample.toml"


def test_sample_parses() -> None:
    sensors = tomllib.loads(SAMPLE.read_text())["sensors"]
    params = parse_params(sensors[0], "sensors[0]")
    assert params.pins == (22, 23)
    assert params.supervision == "loopback"
    assert params.occupied_when_closed
    assert params.exit_tolerance_s == 15.0


def test_defaults() -> None:
    params = parse_params({"pin": 22}, "s")
    assert (params.supervision, params.exit_tolerance_s, params.heartbeat_s) == (
        "none", 10.0, 60.0)
    assert params.pins == (22,)


@pytest.mark.parametrize(
    ("raw", "key", "reason"),
    [
        ({}, "s.pin", "required"),
        ({"pin": 22, "supervision": "eol"}, "s.supervision", "none, loopback, changeover"),
        ({"pin": 22, "supervision": "loopback"}, "s.supervision_pin", "required"),
        ({"pin": 22, "supervision_pin": 23}, "s.supervision_pin", "only used"),
        ({"pin": 22, "fault_delay_s": 2}, "s.fault_delay_s", "only used"),
        ({"pin": 22, "supervision": "changeover", "supervision_pin": 22},
         "s.supervision_pin", "already"),
        ({"pin": 22, "occupied_when": "pressed"}, "s.occupied_when", "closed, open"),
        ({"pin": 22, "exit_tolerance_s": -1}, "s.exit_tolerance_s", "[0, 3600]"),
        ({"pin": 22, "exit_tolerance_s": float("nan")}, "s.exit_tolerance_s", "number"),
        ({"pin": 22, "heartbeat_s": 0}, "s.heartbeat_s", "[0.1, 3600]"),
        ({"pin": 22, "exit_tolerence_s": 5}, "s.exit_tolerence_s", "unknown key"),
    ],
)
def test_bad_values_name_the_key(raw: dict[str, object], key: str, reason: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_params(raw, "s")
    assert err.value.key == key
    assert reason in err.value.reason


def _entry_faults(params: BedPadParams) -> int:
    """Faults a changeover pad declares while a patient gets into bed (the free side
    opens, the pad side closes 80 ms later), on the logic the driver builds."""
    logic = BedPadLogic(exit_tolerance_s=params.exit_tolerance_s, bounce_s=params.debounce_s,
                        levels=[False, True], t0=0.0, supervision="changeover",
                        fault_delay_s=params.fault_delay_s, min_pulse_s=params.min_pulse_s)
    logic.feed(1, False, 10.0)
    logic.feed(0, True, 10.08)
    now = 10.08
    while (due := logic.next_deadline()) is not None and due < 30.0:
        now = max(now, due)
        logic.poll(now)
    logic.poll(30.0)
    assert logic.state.occupied
    return logic.faults


@pytest.mark.parametrize("min_pulse_s", [0.5, 1.5, 5.0])
def test_a_changeover_pad_the_config_accepts_sees_no_fault_when_a_patient_gets_in(
        min_pulse_s: float) -> None:
    """The pad side's load is held for min_pulse_s while the free side has opened: both
    read open that long at every entry, so the fault delay must outlast it."""
    raw = {"pin": 22, "supervision": "changeover", "supervision_pin": 23,
           "min_pulse_s": min_pulse_s}
    if min_pulse_s >= 1.0:  # the default fault delay (1 s) cannot outlast it
        with pytest.raises(ConfigError) as err:
            parse_params(raw, "s")
        assert err.value.key == "s.fault_delay_s"
        assert "min_pulse_s" in err.value.reason
        raw["fault_delay_s"] = min_pulse_s * 2
    assert _entry_faults(parse_params(raw, "s")) == 0
