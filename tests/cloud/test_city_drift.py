"""The dataflow's cross-station drift step (cloud.logic.domain.city_drift): a synthetic city
of five PM stations sharing the weather, one of whose gains grows; its drift comes out as
an `events` point and an alert, and readings out of event-time order are left out."""

from __future__ import annotations

import math
import pickle
import random
import re
from dataclasses import replace

import pytest

import cloud.logic.node as node_module
from cloud.config import DriftTuning, parse_cloud_config
from cloud.detect import FaultEvent, FaultType
from cloud.detect.drift import Drift
from cloud.flow import NodeLogic
from cloud.journal import JournalRecord
from cloud.logic.domain.city_drift import AirReading, CityAir, _event, drift_inputs
from cloud.logic.node import NodeState
from urbanpulse.clock import from_epoch_ns
from urbanpulse.errors import ConfigError
from urbanpulse.wire import Reading, data_topic, encode_batch, format_ts
from urbanpulse.wire.payload import parse_ts

H_NS = 3_600_000_000_000
T0_NS = 1_770_000_000 * 1_000_000_000 // H_NS * H_NS
LEVELS = (1.0, 1.3, 0.9, 1.1, 0.7)


def city(hours: int, drifting: int | None = None, step_min: int = 10) -> list[AirReading]:
    """PM2.5 every `step_min` minutes at each station: weather x level x noise, and from
    hour 50 a gain growing 10 %/h at station `drifting`."""
    rng = random.Random(7)
    out: list[AirReading] = []
    for k in range(hours * 60 // step_min):
        h = k * step_min / 60
        weather = 40 * (1.5 + math.sin(2 * math.pi * h / 24))
        for i, level in enumerate(LEVELS):
            value = weather * level * math.exp(0.08 * rng.gauss(0, 1))
            if i == drifting:
                value *= 1 + 0.1 * max(0.0, h - 50)
            ts = T0_NS + k * step_min * 60_000_000_000
            out.append(("hn", f"aq-{i}", Reading("pm-1", "air.pm", ts, k,
                                                  {"pm25": round(value, 1), "pm10": round(1.6 * value, 1)}),
                        None))
    return out


def test_a_drifting_station_gives_one_drift_event_and_one_alert() -> None:
    points, alerts = CityAir().process(city(72, drifting=3))
    assert len(points) == 1
    assert len(alerts) == 1
    rp, text = points[0]
    assert rp == "raw"
    assert text.startswith("events,")
    assert "node=aq-3" in text
    assert "type=drift" in text
    assert 'field="pm25"' in text
    alert = alerts[0]
    assert (alert.node, alert.sensor, alert.kind, alert.type, alert.field) == (
        "aq-3", "pm-1", "air.pm", "drift", "pm25")
    assert alert.ts_ns > T0_NS + 50 * H_NS


def test_a_clean_city_gives_none() -> None:
    assert CityAir().process(city(72)) == ([], [])


def test_readings_older_than_the_sensors_newest_and_redeliveries_are_left_out() -> None:
    readings = city(72, drifting=3)
    step = CityAir()
    step.process(readings[:100])
    before = pickle.dumps(step.drift)
    # every one of them already taken, or older than the station's newest
    assert step.process(readings[90:100] + readings[:50]) == ([], [])
    assert pickle.dumps(step.drift) == before


def test_the_state_resumes_from_its_pickle_with_the_same_result() -> None:
    readings = city(72, drifting=3)
    whole = CityAir().process(readings)
    first = CityAir()
    head = first.process(readings[:1500])
    resumed: CityAir = pickle.loads(pickle.dumps(first))
    tail = resumed.process(readings[1500:])
    assert (head[0] + tail[0], head[1] + tail[1]) == whole


def test_only_compared_air_fields_of_sensors_past_warmup_go_to_the_step() -> None:
    pm = Reading("pm-1", "air.pm", T0_NS, 1, {"pm25": 10.0, "pm10": 16.0})
    warming = Reading("pm-2", "air.pm", T0_NS, 1, {"pm25": 0.0, "pm10": 0.0}, ("warmup",))
    co2 = Reading("co2-1", "air.co2", T0_NS, 1, {"co2": 420.0})
    loop = Reading("loop-1", "traffic.loop", T0_NS, 1, {"count": 3.0})
    assert drift_inputs("hn", "n", [pm, warming, co2, loop], 7) == [("hn", "n", pm, 7), ("hn", "n", co2, 7)]


def _inventing(ids: int, hours: int = 24) -> list[AirReading]:
    """A node sending CO2 under `ids` sensor ids of its own making, one after the other
    (each id's values vary: with `k % 5`, each id read every 40 or 400 min kept one value,
    stuck, so that nothing was learnt but a first hour of one reading)."""
    return [("hn", "aq-x", Reading(f"co2-{k % ids}", "air.co2", T0_NS + k * 60_000_000_000,
                                   k, {"co2": 420.0 + k % 7}), None)
            for k in range(hours * 60)]


def test_a_node_inventing_sensor_ids_does_not_grow_the_state_and_the_others_go_on() -> None:
    sizes = []
    for ids in (40, 400):  # uncapped: 70 kB, then 1.1 MB
        step = CityAir()
        step.process(_inventing(ids))
        sizes.append(len(pickle.dumps(step)))
    assert sizes[1] < 1.1 * sizes[0]
    readings = city(72, drifting=3)
    junk = _inventing(400, 72)
    mixed = sorted(readings + junk, key=lambda r: r[2].ts_ns)
    assert CityAir().process(mixed) == CityAir().process(readings)


def test_a_snapshot_from_before_the_pair_rule_and_the_cap_resumes() -> None:
    readings = city(72, drifting=3)
    whole = CityAir().process(readings)
    first = CityAir()
    head = first.process(readings[:1500])
    # what such a snapshot lacks: the step's count of sensors per node, the pair rule,
    # the deviations a track keeps for a pair's attribution
    del first.sensors, first.refused, first.drift.pairs
    for state in first.drift._fields.values():
        for track in state.tracks.values():
            del track.recent
    resumed: CityAir = pickle.loads(pickle.dumps(first))
    tail = resumed.process(readings[1500:] + _inventing(400, 72))
    assert (head[0] + tail[0], head[1] + tail[1]) == whole
    assert len(resumed.newest) == 5 + 16


def _resumed(state: dict[str, object]) -> CityAir:
    step = CityAir.__new__(CityAir)
    step.__setstate__(state)  # as unpickling a snapshot of that state does
    return step


def test_drift_detectors_of_another_state_version_learn_anew_and_the_taken_readings_stay() -> None:
    """The drift rules are detectors like the node's: a snapshot of another STATE_VERSION
    (cloud/detect/version.py) drops them without unpickling them, and one from before the
    city kept a version (its detectors unpickled with it) drops them too, once."""
    readings = city(72, drifting=3)
    first = CityAir()
    first.process(readings[:1500])
    fresh = pickle.dumps(CityAir().drift)
    assert pickle.dumps(first.drift) != fresh
    other = first.__getstate__()
    other["detect_version"] = "0"
    other["drift"] = b"a layout this code cannot load"
    before_versions = first.__dict__.copy()
    del before_versions["detect_version"]
    for state in (other, before_versions):
        step = _resumed(state)
        assert pickle.dumps(step.drift) == fresh
        assert step.newest == first.newest  # a reading taken before is not taken again
        assert step.process(readings[:1500]) == ([], [])
    same: CityAir = pickle.loads(pickle.dumps(first))  # this version: resumed as learnt
    assert pickle.dumps(same.drift) != fresh
    assert same.drift.pairs.settings == first.drift.pairs.settings


def test_the_dataflow_hands_the_drift_step_only_what_the_node_state_took_in(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The node step (cloud/flow.py NodeLogic, called as Bytewax calls it) gives the drift
    step the readings that entered the aggregates: a redelivered reading and the readings
    of a sensor past the node's cap (a node inventing ids) do not reach it."""
    monkeypatch.setattr(node_module, "MAX_SENSORS_PER_NODE", 2)
    logic = NodeLogic(NodeState(3600 * 10**9, detect=False), 4096, drift=True)
    t0 = 1_795_000_000_000_000_000
    first = [Reading(f"pm{i}", "air.pm", t0 + i * 10**9, 1, {"pm25": 20.0, "pm10": 30.0})
             for i in range(3)]
    again = [first[0], Reading("pm1", "air.pm", t0 + 60 * 10**9, 2, {"pm25": 21.0, "pm10": 31.0})]
    topic = data_topic("hn", "aq-1")
    records = [JournalRecord("i0", k, t0 + 10**12 + k, topic, encode_batch("hn", "aq-1", batch))
               for k, batch in enumerate((first, again))]
    out, _ = logic.on_batch(records)
    air = [[(site, node, r.sensor, r.seq) for site, node, r, _ in o[3]] for o in out]
    assert air == [[("hn", "aq-1", "pm0", 1), ("hn", "aq-1", "pm1", 1)],  # pm2: refused
                   [("hn", "aq-1", "pm1", 2)]]  # pm0 seq 1 again: a duplicate


def test_the_config_s_pair_suffix_declares_the_pairs_and_a_change_starts_them_afresh() -> None:
    base = {"mqtt": {"password_file": "p", "ca_file": "c"}, "influx": {"password_file": "p"}}
    assert parse_cloud_config(base).flow.drift_pair_suffix == "-b"
    assert parse_cloud_config({**base, "flow": {"drift_pair_suffix": "-2"}}
                              ).flow.drift_pair_suffix == "-2"
    for bad in ("", "_B", "-" * 17, 2):
        with pytest.raises(ConfigError, match=r"flow\.drift_pair_suffix"):
            parse_cloud_config({**base, "flow": {"drift_pair_suffix": bad}})

    t0 = 1_795_000_000_000_000_000
    step = CityAir()
    step.process([("hn", "aq", Reading(m, "air.pm", t0 + k * 60 * 10**9, k, {"pm25": 20.0}), None)
                  for k in range(30) for m in ("pm-1", "pm-1-b")])
    pairs = step.drift.pairs
    step.use_pair_suffix("-b")  # what the dataflow does on resume: the same, kept
    assert step.drift.pairs is pairs
    step.use_pair_suffix("-2")  # another convention: declared anew, learnt afresh
    assert step.drift.pairs is not pairs
    assert step.drift.pairs.settings.second_suffix == "-2"
    assert pickle.loads(pickle.dumps(step)).drift.pairs.settings.second_suffix == "-2"


def test_the_config_s_drift_thresholds_are_validated_by_key() -> None:
    base = {"mqtt": {"password_file": "p", "ca_file": "c"}, "influx": {"password_file": "p"}}
    assert parse_cloud_config(base).drift == DriftTuning()
    tuned = parse_cloud_config({**base, "drift": {"pair_shift": 0.2, "cross_h": 12, "cross_min_others": 4}})
    assert (tuned.drift.pair_shift, tuned.drift.cross_h, tuned.drift.cross_min_others) == (0.2, 12.0, 4)
    for key, bad in (("pair_shift", 0.0), ("pair_shift", 2), ("pair_spread", -1), ("cross_k", "1"),
                     ("cross_h", 0), ("cross_min_others", 0), ("cross_min_others", 2.5)):
        with pytest.raises(ConfigError, match=rf"drift\.{key}"):
            parse_cloud_config({**base, "drift": {key: bad}})
    with pytest.raises(ConfigError, match=r"drift\.window"):
        parse_cloud_config({**base, "drift": {"window": 3}})


def _pair_readings(hours: float) -> list[AirReading]:
    """A station's two PM modules, the first drifting +8 %/h from hour 30."""
    from tests.cloud.detect.test_detect_pair_drift import ramp, station

    return [("hn", "aq", Reading(module, "air.pm", ts, k, {"pm25": value, "pm10": value}), None)
            for k, (module, ts, value) in enumerate(station(hours, gain_a=ramp(0.08, 30)))]


def test_thresholds_from_the_config_judge_a_resumed_state_without_learning_anew() -> None:
    readings = _pair_readings(36)
    learnt = CityAir()
    learnt.process(readings[:len(readings) * 3 // 4])  # 27 h: learnt, no drift yet
    rest = readings[len(readings) * 3 // 4:]

    as_before = pickle.loads(pickle.dumps(learnt))
    as_before.use_thresholds(**vars(DriftTuning()))
    points, _ = as_before.process(rest)
    assert [p for p in points if "type=drift" in p[1]], "the default thresholds find the drift"

    lenient = pickle.loads(pickle.dumps(learnt))
    pairs = lenient.drift.pairs
    lenient.use_thresholds(**{**vars(DriftTuning()), "pair_shift": 0.9})
    assert lenient.drift.pairs is pairs  # what the pair learnt is kept
    points, _ = lenient.process(rest)
    assert not [p for p in points if "type=drift" in p[1]]


def test_a_config_asking_many_other_stations_keeps_enough_references() -> None:
    """`drift.cross_min_others` may be up to 100 (cloud/config.py): a sensor then keeps
    twice as many references (the default 32 below 16), not fewer than it needs (which
    DriftSettings refuses: a processor that could not start)."""
    city = CityAir()
    city.use_thresholds(**{**vars(DriftTuning()), "cross_min_others": 100})
    assert (city.drift.settings.min_others, city.drift.settings.max_reference_stations) == (100, 200)
    city.use_thresholds(**vars(DriftTuning()))
    assert (city.drift.settings.min_others, city.drift.settings.max_reference_stations) == (3, 32)


def test_a_drift_is_stamped_by_its_reading_or_out_of_the_alerts_reach_at_its_reception() -> None:
    """cloud/logic/events.py's rule for a reading's fault events: received more than 5 min
    after its stamp or more than 1 min before it, a drift is stamped at the reception (the
    reading's stamp in node_ts); two drifts of one module found on one reading (the
    cross-station one and its pair's) stay two points either way. (Through the processor's
    path to the real InfluxDB and the Sensor fault rule: tests/dashboards/test_dashboards_drift_clock.py.)"""
    stamp = T0_NS + 60 * H_NS
    cross = FaultEvent("pm-1", "pm25", FaultType.DRIFT, from_epoch_ns(T0_NS + 55 * H_NS),
                       from_epoch_ns(stamp), 30.0, "cross")
    pair = replace(cross, value=None, detail="pair")
    drifts = [Drift(("hn", "aq-1", "pm-1"), cross), Drift(("hn", "aq-1", "pm-1"), pair, ("pm-1", "pm-1-b"))]

    def stamps(received_ns: int | None) -> list[tuple[int, int, str | None]]:
        """Per drift: the point's stamp, the alert's, the point's node_ts."""
        out = []
        for place, drift in enumerate(drifts):
            (_, text), alert = _event(drift, 7, place, received_ns)
            node_ts = re.search(r'node_ts="([^"]*)"', text)
            out.append((int(text.rsplit(" ", 1)[1]), alert.ts_ns, node_ts and node_ts.group(1)))
        return out

    for received in (None, stamp + 5 * 60 * 10**9, stamp - 60 * 10**9):
        assert stamps(received) == [(stamp, stamp, None), (stamp + 1, stamp, None)]
    for received in (stamp + 5 * 60 * 10**9 + 1000, stamp - 60 * 10**9 - 1000, stamp + H_NS + 123_456_789):
        at = received // 1000 * 1000
        taken = format_ts(from_epoch_ns(stamp))
        assert stamps(received) == [(at + 7 * 8, at, taken), (at + 7 * 8 + 1, at, taken)]


def test_a_drifting_station_s_backlog_is_judged_and_its_drift_stamped_at_reception() -> None:
    """A node whose link was down from hour 50 to hour 62 sends those hours' readings when it
    is back (the agent's outbox): its hours, judged without it by the others, are judged when
    they come in, against the others' levels of each (kept a day: cloud/detect/drift.py).
    Before, every reading of an hour judged without it was too late to count: a station's
    backlog was never judged: none was found by the time it was in."""
    back_ns = T0_NS + 62 * H_NS
    readings = [(site, node, r, back_ns if node == "aq-3" and 50 * H_NS <= r.ts_ns - T0_NS < 62 * H_NS
                 else r.ts_ns) for site, node, r, _ in city(72, drifting=3)]
    order = sorted(readings, key=lambda a: (a[3], a[2].ts_ns))
    points, alerts = CityAir().process(order[:sum(1 for a in order if a[3] <= back_ns)])
    assert len(points) == 1
    assert len(alerts) == 1
    text = points[0][1]
    assert "node=aq-3" in text
    assert "type=drift" in text
    assert alerts[0].ts_ns == back_ns  # at its reception, its stamp in node_ts
    node_ts = re.search(r'node_ts="([^"]*)"', text)
    assert node_ts is not None
    assert T0_NS + 50 * H_NS < parse_ts(node_ts.group(1)) < back_ns
