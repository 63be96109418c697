"""The cross-station drift step: every air sensor of a city through one `CityDrift`
(cloud/detect/drift.py), its drifts turned into `events` points and alerts.

The readings come from the node steps in each node's arrival order; like the per-sensor
detectors (cloud.logic.events), the step takes a sensor's compared field only in event-time
order: a reading older than the newest one taken from that sensor (a backlog interleaving
with live data) is left out, and so is the same reading again (a redelivery).

A node's compared sensors are its first `MAX_SENSORS_PER_NODE` (16; an air station
carries a few modules): a node inventing sensor ids would otherwise grow the step's
state without end, quadratically (each sensor learns its ratio to every other one). The
node step refuses a node's sensors only past its own, larger cap, and hands the step
every reading of a message.

A drift found between a station's two modules of a field (cloud/detect/pair_drift.py)
is one event with the modules in its `pair` field; its `sensor` tag is the module the
other stations point at, or "<first>+<second>" when they cannot tell.

Live, the stations' readings reach the step seconds apart in event time. Catching up on a
backlog of many hours, the node step takes each node's share of a source batch in turn.
Stations late in that turn can then find an hour already judged without them: they are
judged in it on their own once they have read past it, against the levels the others were
judged on (a day of them kept), but are no reference for the others in it, so drift is
judged on fewer references until the backlog is through. So is a node whose readings come
in more than 10 min after the hour's end (a slow link, a backlog after an outage;
cloud/detect/drift.py waits that long for it).

A drift event is stamped by the reading it fired on (the one that completed the judged hour
or bin: another station's, maybe, on its node's clock), unless the cloud received that
reading more than 5 min after its stamp or more than 1 min before it: then at that
reception, the reading's stamp kept in `node_ts`, as the fault events of a reading are
(cloud/logic/events.py, `stamped_at_reception`). Grafana's "Sensor fault" alert counts the
events of the last 15 minutes by their stamps: a drift found on a backlog (stations
delivering hours late after an outage) or on a reading of a node whose clock is behind was
written that far back and never alerted, and one on a clock ahead alerted that much late.
The reception is the journal's stamp of the reading's message, so a replay writes the same
point.
"""

from __future__ import annotations

import math
import pickle
from collections import Counter
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from cloud.detect import STATE_VERSION as DETECT_STATE_VERSION
from cloud.detect.drift import DRIFT_FIELDS, CityDrift, Drift, DriftSettings
from cloud.detect.pair_drift import PairDrift, PairDriftSettings
from cloud.logic.events import EVENTS, Alert, reception_stamp, stamped_at_reception
from cloud.logic.lines import line
from cloud.logic.records import RP_RAW, Point
from cloud.logic.rollup import OUT_OF_WINDOWS
from urbanpulse.clock import to_epoch_ns
from urbanpulse.wire import Reading, format_ts, outside_range

CITY = "city"  # the step's one key: every site is in one city
KIND_OF_FIELD = {name: kind for kind, name in DRIFT_FIELDS.items()}

# site, node, reading, when the cloud received it (the journal's stamp, ns; None: not told)
AirReading = tuple[str, str, Reading, int | None]
MAX_SENSORS_PER_NODE = 16


def drift_inputs(site: str, node: str, readings: Iterable[Reading],
                 received_ns: int | None = None) -> list[AirReading]:
    """What the drift step needs of a node's readings, received by the cloud at
    `received_ns` (the journal's stamp of their message; None: not told, and a drift they
    complete is stamped by its reading whenever it came): its compared air fields; readings
    kept out of the windows (cloud.logic.rollup.OUT_OF_WINDOWS) and values outside the
    contract's ranges left out."""
    return [(site, node, r, received_ns) for r in readings
            if r.kind in DRIFT_FIELDS and not (r.flags and not OUT_OF_WINDOWS.isdisjoint(r.flags))
            and outside_range(r.kind, r.values) is None]


class CityAir:
    """The drift step's state for one city: picklable."""

    def __init__(self, settings: DriftSettings | None = None,
                 pair_settings: PairDriftSettings | None = None) -> None:
        self.drift = CityDrift(settings, pair_settings)
        self.detect_version = DETECT_STATE_VERSION
        self.newest: dict[tuple[str, str, str], tuple[int, int]] = {}  # series -> (ts, seq)
        self.sensors: dict[tuple[str, str], int] = {}  # node -> its sensors in `newest`
        self.refused = 0  # readings of a node's sensors past MAX_SENSORS_PER_NODE

    def __getstate__(self) -> dict[str, Any]:
        # The detectors pickled apart, as NodeState pickles its watches: a snapshot of
        # another detector state version is dropped without being unpickled.
        state = self.__dict__.copy()
        state["drift"] = pickle.dumps(self.drift, protocol=pickle.HIGHEST_PROTOCOL)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        if "sensors" not in state:  # a snapshot from before the cap
            state["refused"] = 0
            state["sensors"] = Counter((site, node) for site, node, _ in state["newest"])
        drift = state.get("drift")
        if state.get("detect_version") != DETECT_STATE_VERSION:
            # Learnt by detectors of another state version (cloud/detect/version.py): learnt
            # anew (the dataflow applies the config's settings to a resumed state); which
            # readings were taken (`newest`) is the step's own, and stays.
            state["drift"] = CityDrift()
            state["detect_version"] = DETECT_STATE_VERSION
        elif isinstance(drift, bytes):
            state["drift"] = pickle.loads(drift)
        self.__dict__.update(state)

    def use_pair_suffix(self, suffix: str) -> None:
        """Declare pairs by `<id><suffix>` (the config's), e.g. on a state resumed from a
        snapshot; pairs declared by another suffix before are dropped and learnt anew."""
        pairs = self.drift.pairs
        if pairs.settings.second_suffix != suffix:
            self.drift.pairs = PairDrift(replace(pairs.settings, second_suffix=suffix))

    def use_thresholds(self, *, pair_shift: float, pair_spread: float, cross_k: float,
                       cross_h: float, cross_min_others: int) -> None:
        """The config's thresholds, also on a state resumed from a snapshot. They judge what
        was learnt and take effect at the next judgement: nothing is learnt anew. A sensor
        keeps twice `cross_min_others` reference stations where that is more than the default
        (`DriftSettings.max_reference_stations`): enough to be judged with some missing."""
        pairs = self.drift.pairs
        pairs.settings = replace(pairs.settings, shift=pair_shift, spread=pair_spread)
        self.drift.settings = replace(
            self.drift.settings, k=cross_k, h=cross_h, min_others=cross_min_others,
            max_reference_stations=max(DriftSettings().max_reference_stations, 2 * cross_min_others))

    def process(self, readings: Iterable[AirReading]) -> tuple[list[Point], list[Alert]]:
        points: list[Point] = []
        alerts: list[Alert] = []
        for site, node, r, received_ns in readings:
            name = DRIFT_FIELDS.get(r.kind)
            value = r.values.get(name) if name is not None else None
            if value is None or not math.isfinite(value):
                continue
            series = (site, node, r.sensor)
            last = self.newest.get(series)
            if last is None:
                known = self.sensors.get((site, node), 0)
                if known >= MAX_SENSORS_PER_NODE:
                    self.refused += 1
                    continue
                self.sensors[(site, node)] = known + 1
            elif r.ts_ns < last[0] or (r.ts_ns, r.seq) == last:
                continue
            self.newest[series] = (r.ts_ns, r.seq)
            for place, drift in enumerate(self.drift.update(series, r.kind, r.ts_ns, r.values)):
                point, alert = _event(drift, r.seq, place, received_ns)
                points.append(point)
                alerts.append(alert)
        return points, alerts


def _event(drift: Drift, seq: int, place: int, received_ns: int | None) -> tuple[Point, Alert]:
    """The point and alert of a drift found on reading `seq` (stamped `detected_at`),
    received at `received_ns`, the `place`-th drift that reading completed: stamped by the
    reading, `place` ns after it, or where the reading came out of the Sensor fault alert's
    reach at the reception, placed after it by the reading's number and the drift's place
    (`reception_stamp`), so that a module's cross-station and pair drifts found on one
    reading stay two points. The alert carries the reading's stamp or the reception."""
    site, node, sensor = drift.series
    ev = drift.event
    kind = KIND_OF_FIELD[ev.field]
    at = to_epoch_ns(ev.detected_at)
    stamp = at + place  # two drifts of one module on one reading (cross-station, pair): two points
    value = float("nan") if ev.value is None else float(ev.value)
    fields: dict[str, float | int | str | bool] = {
        "field": ev.field, "delay_s": ev.delay.total_seconds(), "detail": ev.detail}
    if ev.value is not None:
        fields["value"] = value
    if drift.pair is not None:  # found between a station's two modules: both, by id
        fields["pair"] = "+".join(drift.pair)
    if received_ns is not None and stamped_at_reception(at, received_ns):
        fields["node_ts"] = format_ts(ev.detected_at)
        at = received_ns // 1000 * 1000
        stamp = reception_stamp(received_ns, seq, place)
    tags = {"site": site, "node": node, "sensor": sensor, "kind": kind, "type": str(ev.fault)}
    return ((RP_RAW, line(EVENTS, tags, fields, stamp)),
            Alert(site, node, sensor, kind, str(ev.fault), ev.field,
                  0.0 if ev.value is None else value, at, ev.detail))
