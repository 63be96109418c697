"""The kinds of reading the contract knows, with their fields and units (contract v1).

A kind names what was measured; its fields are the values a reading carries. Units are
part of the contract: a node that sends a field in another unit is rejected, not
silently mixed with the others.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class FieldSpec:
    unit: str
    required: bool = True
    low: float | None = None
    high: float | None = None

    def __getstate__(self) -> tuple[object, ...]:
        # As dataclasses' own (whose __setstate__ loads it), without its `fields()` call:
        # the cloud's snapshots pickle a spec with each fault monitor.
        return self.unit, self.required, self.low, self.high


@dataclass(frozen=True, slots=True)
class KindSpec:
    name: str
    description: str
    fields: dict[str, FieldSpec]

    @property
    def units(self) -> dict[str, str]:
        return {name: spec.unit for name, spec in self.fields.items()}

    @property
    def measurement(self) -> str:
        """The InfluxDB measurement this kind is stored in."""
        return self.name.replace(".", "_")


# A bool field carries 0 or 1 (an int or a float equal to it); any other value is refused
# by the contract, not read as one or the other.
BOOL_UNIT = "bool"

# A field in one of these units counts things (persons, vehicles, pulses): its value must be
# a whole number (an int, or a float such as 3.0, which JSON may carry) from 0 to
# MAX_WHOLE_COUNT; any other value is refused by the contract (`count_problem`), not stored.
COUNT_UNITS = frozenset({"persons", "vehicles", "pulses"})
# Beyond 2^53 a float no longer holds every whole number: 2^53 + 1 reads as 2^53.
MAX_WHOLE_COUNT = 2**53

# GPIO sensors: pulses the edge driver rejected as too short to be real (a contact
# glitch, a false pulse picked up by the cable) since its previous reading. Sent only
# when not 0.
_GLITCHES = FieldSpec("pulses", required=False, low=0, high=1e6)


def _kind(name: str, description: str, **fields: FieldSpec) -> KindSpec:
    return KindSpec(name, description, fields)


KINDS: dict[str, KindSpec] = {
    k.name: k
    for k in (
        _kind(
            "air.pm",
            "Particulate matter (SDS011, PMS5003): mass concentrations.",
            pm25=FieldSpec("ug/m3", low=0, high=1000),
            pm10=FieldSpec("ug/m3", low=0, high=2000),
            pm1=FieldSpec("ug/m3", required=False, low=0, high=1000),
            temperature_c=FieldSpec("degC", required=False, low=-40, high=85),
            humidity_pct=FieldSpec("%", required=False, low=0, high=100),
        ),
        _kind(
            "air.co2",
            "Carbon dioxide (MH-Z19B).",
            co2=FieldSpec("ppm", low=0, high=10000),
            temperature_c=FieldSpec("degC", required=False, low=-40, high=85),
        ),
        _kind(
            "traffic.loop",
            "Inductive loop detector, one lane, aggregated over an interval.",
            count=FieldSpec("vehicles", low=0, high=10000),
            # Absent for pulse-output loop cards, which carry no on-time.
            occupancy_pct=FieldSpec("%", required=False, low=0, high=100),
            interval_s=FieldSpec("s", low=0.001, high=3600),
            speed_kmh=FieldSpec("km/h", required=False, low=0, high=300),
            # How many vehicles speed_kmh is the mean of (0: no speed measured). Older agents
            # do not send it: the cloud then weights speed_kmh by count, as before.
            speed_count=FieldSpec("vehicles", required=False, low=0, high=10000),
            length_m=FieldSpec("m", required=False, low=0, high=50),
            glitches=_GLITCHES,
        ),
        _kind(
            "hospital.bed",
            "Bed-occupancy pad or mat: occupied (1) or free (0); fault 1 when the NC cable is "
            "cut; a mat's load and motion over the reading's interval.",
            occupied=FieldSpec(BOOL_UNIT, low=0, high=1),
            fault=FieldSpec(BOOL_UNIT, required=False, low=0, high=1),
            glitches=_GLITCHES,
            # An analogue mat (edge/drivers/bed_mat): its mean level (0..1 of the ADC's full
            # scale) and the RMS of its high-passed level (a body's breathing and movement).
            load=FieldSpec("1", required=False, low=0, high=1),
            motion=FieldSpec("1", required=False, low=0, high=1),
        ),
        _kind(
            "hospital.door",
            "Door counter: people entering over an interval (visits, ER arrivals); fault 1 "
            "when a supervised beam's cable is cut.",
            count=FieldSpec("persons", low=0, high=100000),
            interval_s=FieldSpec("s", low=0.001, high=3600),
            fault=FieldSpec(BOOL_UNIT, required=False, low=0, high=1),
            glitches=_GLITCHES,
        ),
        _kind(
            "hospital.queue",
            "Queue kiosk: a ticket issued (called=0) or called to a counter (called=1).",
            ticket=FieldSpec("1", low=0, high=1e9),
            called=FieldSpec(BOOL_UNIT, low=0, high=1),
            counter=FieldSpec("1", required=False, low=0, high=1000),
        ),
    )
}


# kind -> field -> (low, high), open ends as infinities: looked up once per reading.
_BOUNDS: dict[str, dict[str, tuple[float, float]]] = {
    kind.name: {name: (-math.inf if f.low is None else f.low, math.inf if f.high is None else f.high)
                for name, f in kind.fields.items()}
    for kind in KINDS.values()
}


_OPEN = (-math.inf, math.inf)  # a field the contract does not know has no range

# The values a module of a kind reads while what it measures is beyond its range: the full
# scales of the modules the contract names (the MH-Z19B's ranges, set by its driver's
# `range_ppm`; the SDS011 clamps its frames at 999.9). A run of one of them is a saturated
# module as much as a stuck one (`cloud.detect.faults`, STUCK's detail).
FULL_SCALES: dict[tuple[str, str], tuple[float, ...]] = {
    ("air.co2", "co2"): (2000.0, 5000.0, 10000.0),
    ("air.pm", "pm25"): (999.9,),
    ("air.pm", "pm10"): (999.9,),
}


def full_scale(kind: str, field: str, value: float) -> bool:
    """Whether `value` is a full scale of a module of `kind` for `field` (FULL_SCALES)."""
    return value in FULL_SCALES.get((kind, field), ())


def field_range(kind: str, field: str) -> tuple[float, float]:
    """The contract's physical range of one field (`low`, `high`), open ends as
    infinities; open for a kind or field the contract does not know."""
    return _BOUNDS.get(kind, {}).get(field, _OPEN)


def outside_range(kind: str, values: Mapping[str, float]) -> str | None:
    """The first field whose value lies outside the contract's physical range (`low`,
    `high`), or None. Such a value is valid on the wire (the cloud stores it and raises
    OUT_OF_RANGE) but no measurement: it is kept out of aggregates and anomaly scores."""
    bounds = _BOUNDS.get(kind, {})
    for name, value in values.items():
        low, high = bounds.get(name, _OPEN)
        if not low <= value <= high:
            return name
    return None


def count_problem(value: int | float) -> str | None:
    """Why `value`, a finite number, is no count of the contract (a whole number in
    [0, MAX_WHOLE_COUNT]), or None when it is one."""
    if value < 0:
        return "is negative"
    if value > MAX_WHOLE_COUNT:
        return "is beyond 2^53, where a float no longer holds every whole number"
    if type(value) is float and not value.is_integer():
        return "is not a whole number"
    return None
