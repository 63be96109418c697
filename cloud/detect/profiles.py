"""Detector settings and alert thresholds per sensor kind: `make_detector` is what the
dataflow calls, once per (sensor, field) series.

The defaults were tuned on NAB (docs/anomaly-detection.md). The default threshold,
0.80, was fixed without labels before the last settings were tuned and kept since:
every context of the value is new (0.625) and its tail statistic is rarer than about
1 in 20 (0.375 x 0.47). The tail scale was later tuned with the labels, and at it the
NAB-tuned threshold happens to lie near 0.80 (docs/anomaly-detection.md).
Road-traffic loops (`traffic.loop`) get the `ROAD_TRAFFIC` settings: the context
novelty of the first differences (orders 1-3, 500 contexts) counts beside that of the
values (chosen on NAB's realTraffic files, road sensors; every other NAB category is
scored with the default), the tails rank against the last 700 values instead of 1,000
(the two memories and four tails under 64 KB in memory),
and an alert there stays open for 10 values instead of 40: two road anomalies may
come 38 values apart (NAB's speed_7578), and a longer hold would silence the second.
Booleans get a higher threshold and counts of people or vehicles, which go to zero
every night, a longer warm-up. Fields that are no measurement are not scored at all
(`scored`): the dataflow gives them the fault rules only.
"""

from __future__ import annotations

from dataclasses import replace

from cloud.detect.detector import AnomalyDetector, DetectorSettings
from cloud.detect.errors import DetectError
from urbanpulse.wire.kinds import KINDS

NAB_TUNED = DetectorSettings()
# The differences' memory learns orders 1-3 in at most 500 contexts and the tails rank
# against their last 700 values: the road profile's detector under 64 KB in memory, as the
# default's (docs/anomaly-detection.md, "Memory, honestly").
ROAD_TRAFFIC = replace(
    NAB_TUNED,
    difference_novelty=1.0,
    hold=10,
    history=700,
    difference_orders=(1, 2, 3),
    difference_capacity=500,
)
DETECTORS: dict[str, DetectorSettings] = {"default": NAB_TUNED, "traffic": ROAD_TRAFFIC}

_BOOL = replace(NAB_TUNED, threshold=0.95)
_COUNTS = replace(NAB_TUNED, warmup=288)
_VEHICLE_COUNTS = replace(ROAD_TRAFFIC, warmup=288)

# The road-traffic settings of the releases before session 17 (tails of 1,000 values, the
# differences' memory as the values': orders 1-5, 2,500 contexts), which no code makes now.
# A detector pickled with them takes today's when it is loaded (`AnomalyDetector.narrow`),
# keeping what it learnt as far as they hold it: the 64 KB bound after an upgrade, with no
# state version and nothing learnt again (docs/anomaly-detection.md, "Learnt state across
# upgrades").
ROAD_TRAFFIC_BEFORE_17 = replace(
    ROAD_TRAFFIC, history=1000, difference_orders=None, difference_capacity=None
)
SUPERSEDED: dict[DetectorSettings, DetectorSettings] = {
    ROAD_TRAFFIC_BEFORE_17: ROAD_TRAFFIC,
    replace(ROAD_TRAFFIC_BEFORE_17, warmup=288): _VEHICLE_COUNTS,
}

# (kind, field) -> settings; a field that is not listed gets the kind's entry under "*".
KIND_SETTINGS: dict[tuple[str, str], DetectorSettings] = {
    ("air.pm", "*"): NAB_TUNED,
    ("air.co2", "*"): NAB_TUNED,
    ("traffic.loop", "*"): ROAD_TRAFFIC,
    ("traffic.loop", "count"): _VEHICLE_COUNTS,
    ("hospital.bed", "*"): _BOOL,
    ("hospital.door", "*"): _COUNTS,
    ("hospital.queue", "*"): _BOOL,
    ("hospital.queue", "ticket"): _COUNTS,
}

# Each profile's settings, by themselves: a detector loaded with settings equal to one of
# them takes that object (`AnomalyDetector.__setstate__`), as a fresh one does, not a copy.
CANONICAL: dict[DetectorSettings, DetectorSettings] = {
    s: s for s in (*DETECTORS.values(), *KIND_SETTINGS.values(), *SUPERSEDED.values())
}


# Fields that are no measurement get no anomaly detector (the fault rules still watch
# them): identifiers and event types (a kiosk's ticket and counter numbers count up and
# restart daily; `called` tells an issue from a call), a bed pad's two states (a bed that
# changes state is not news; the ward's occupancy is aggregated), configuration
# (`interval_s`), the flags the fault rules read (`fault`: CUT_CABLE, `glitches`: SPIKE)
# and weights (`speed_count`: how many vehicles a lane's speed is the mean of).
UNSCORED_FIELDS = frozenset({"interval_s", "fault", "glitches", "speed_count"})
UNSCORED_KINDS = frozenset({"hospital.queue", "hospital.bed"})


def scored(kind: str, field: str) -> bool:
    """Whether the dataflow scores this field of this kind with an anomaly detector."""
    return kind not in UNSCORED_KINDS and field not in UNSCORED_FIELDS


def settings_for(kind: str, field: str) -> DetectorSettings:
    if kind not in KINDS:
        raise DetectError(f"unknown sensor kind {kind!r} (known: {', '.join(sorted(KINDS))})")
    if field not in KINDS[kind].fields:
        raise DetectError(f"kind {kind!r} has no field {field!r}")
    return KIND_SETTINGS.get((kind, field)) or KIND_SETTINGS.get((kind, "*")) or NAB_TUNED


def make_detector(kind: str, field: str, name: str | None = None) -> AnomalyDetector:
    """A fresh detector for one field of one sensor of `kind` (a name in urbanpulse.wire.kinds)."""
    return AnomalyDetector(settings_for(kind, field), name or f"{kind}/{field}")


def detector_by_name(name: str) -> AnomalyDetector:
    """A detector with named settings (`urbanpulse detect --detector NAME`)."""
    if name in DETECTORS:
        return AnomalyDetector(DETECTORS[name], name)
    kind, _, field = name.partition(":")
    if kind in KINDS and field:
        return make_detector(kind, field)
    known = ", ".join([*DETECTORS, "KIND:FIELD"])
    raise DetectError(f"unknown detector {name!r} (known: {known})")
