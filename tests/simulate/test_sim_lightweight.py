"""Lightweight readings: the wire contract, sequence numbers, determinism."""

from __future__ import annotations

from dataclasses import replace

import pytest

from urbanpulse.simulate import City, Simulation
from urbanpulse.simulate.city import AirSensor, AirStation, Lane
from urbanpulse.wire import MAX_PAYLOAD_BYTES, Reading, decode_batch

from .conftest import MONDAY

H = 3600.0


def payloads(sim: Simulation, hours: float, step: float = H) -> list[bytes]:
    return [b.encode() for b in sim.readings().run(hours * H, step)]


def test_readings_validate_against_the_wire_contract(hanoi: City) -> None:
    sim = Simulation(hanoi, seed=1, start=MONDAY, events=())
    generator = sim.readings(max_batch=400)
    count = 0
    seqs: dict[tuple[str, str, str], list[int]] = {}
    last_ts: dict[tuple[str, str, str], int] = {}
    end_ns = sim.timebase.ts_ns(6 * H)
    kinds = set()
    for batch in generator.run(6 * H):
        assert 1 <= len(batch.readings) <= 400
        payload = batch.encode()
        assert len(payload) < MAX_PAYLOAD_BYTES
        parsed = decode_batch(payload, site=batch.site, node=batch.node,
                              now_ns=int(end_ns))
        assert parsed.rejected == []
        assert parsed.readings == batch.readings
        spec = hanoi.node(batch.site, batch.node)
        for r in parsed.readings:
            key = (batch.site, batch.node, r.sensor)
            assert spec.sensor(r.sensor).kind == r.kind
            seqs.setdefault(key, []).append(r.seq)
            assert r.ts_ns >= last_ts.get(key, sim.timebase.start_ns)
            assert r.ts_ns < end_ns
            last_ts[key] = r.ts_ns
            kinds.add(r.kind)
        count += len(parsed.readings)
    assert count == generator.count > 10_000
    assert all(s == list(range(len(s))) for s in seqs.values())
    assert kinds == {"air.pm", "air.co2", "traffic.loop", "hospital.bed", "hospital.door",
                     "hospital.queue"}
    every_sensor = {(n.site, n.node, s.id) for n in hanoi.nodes for s in n.sensors
                    if s.driver != "queue_kiosk"}  # the kiosks are idle at night
    assert every_sensor <= set(seqs)


def test_same_seed_same_readings_other_seed_other_readings(hanoi: City) -> None:
    a = payloads(Simulation(hanoi, seed=42, start=MONDAY), 3)
    b = payloads(Simulation(hanoi, seed=42, start=MONDAY), 3)
    c = payloads(Simulation(hanoi, seed=43, start=MONDAY), 3)
    assert a == b
    assert a != c


def test_readings_do_not_depend_on_the_step(hanoi: City) -> None:
    def flat(step: float) -> dict[tuple[str, str, str, int], Reading]:
        sim = Simulation(hanoi, seed=8, start=MONDAY)
        return {(b.site, b.node, r.sensor, r.seq): r
                for b in sim.readings().run(4 * H, step) for r in b.readings}

    assert flat(H) == flat(17 * 60.0)


def test_adding_sensors_does_not_change_the_others(hanoi: City) -> None:
    base = Simulation(hanoi, seed=5, start=MONDAY)
    station = hanoi.air_stations[0]
    bigger_station = replace(station, sensors=(*station.sensors,
                                               AirSensor("extra-pms", "pms5003", 30.0, 1.0)))
    crossing = hanoi.intersections[0]
    bigger_crossing = replace(crossing, lanes=(*crossing.lanes, replace(
        crossing.lanes[0], sensor="extra-lane")))
    new_station = AirStation("new-site", "aq-9", "New", "dong-da", False, 1.0,
                             (AirSensor("sds011", "sds011", 30.0, 1.0),))
    city = replace(hanoi,
                   air_stations=(bigger_station, *hanoi.air_stations[1:], new_station),
                   intersections=(bigger_crossing, *hanoi.intersections[1:]))
    grown = Simulation(city, seed=5, start=MONDAY)

    def by_sensor(sim: Simulation) -> dict[tuple[str, str, str], list[object]]:
        out: dict[tuple[str, str, str], list[object]] = {}
        for b in sim.readings().run(3 * H):
            for r in b.readings:
                out.setdefault((b.site, b.node, r.sensor), []).append(r)
        return out

    before, after = by_sensor(base), by_sensor(grown)
    assert set(after) - set(before) == {
        (station.site, station.node, "extra-pms"), (crossing.site, crossing.node, "extra-lane"),
        ("new-site", "aq-9", "sds011")}
    for key, readings in before.items():
        assert after[key] == readings, key


def test_generator_refuses_to_go_back(hanoi: City) -> None:
    generator = Simulation(hanoi, seed=1, start=MONDAY).readings()
    generator.advance(600.0)
    with pytest.raises(Exception, match="cannot go back"):
        generator.advance(300.0)


def test_a_replicated_city_is_fast_enough_for_load_tests(hanoi: City) -> None:
    # Not a benchmark (docs/simulator.md has the numbers): a guard against an order of
    # magnitude lost. Per second of this thread's CPU, the same as per second of wall time
    # on an idle machine; a busy one (two pytest-xdist workers and their servers on two
    # cores) gave it 14,000 a wall second once.
    import time

    sim = Simulation(hanoi.replicate(10), seed=3, start=MONDAY)
    generator = sim.readings()
    began = time.thread_time()
    for _ in generator.run(2 * H):
        pass
    rate = generator.count / (time.thread_time() - began)
    assert generator.count > 50_000
    assert rate > 20_000


def test_lane_values_make_sense(hanoi: City) -> None:
    sim = Simulation(hanoi, seed=1, start=MONDAY, events=())
    lane: Lane = hanoi.intersections[0].lanes[0]
    values = [r.values for b in sim.readings().run(18 * H) if b.node == "cabinet"
              and b.site == hanoi.intersections[0].site for r in b.readings
              if r.sensor == lane.sensor]
    assert len(values) == 18 * 60 - 1  # one a minute; none for the minute before the start
    assert all(v["interval_s"] == 60 for v in values)
    assert all(0 <= v["occupancy_pct"] <= 100 for v in values)
    with_speed = [v for v in values if "speed_kmh" in v]
    assert all(2 <= v["speed_kmh"] <= 130 for v in with_speed)
    assert all(v["count"] > 0 for v in with_speed)


def test_shards_together_make_the_whole_city(hanoi: City) -> None:
    city = hanoi.replicate(3)

    def readings(c: City) -> dict[tuple[str, str, str, int], Reading]:
        sim = Simulation(c, seed=6, start=MONDAY)
        return {(b.site, b.node, r.sensor, r.seq): r
                for b in sim.readings().run(2 * H) for r in b.readings}

    whole = readings(city)
    parts = [readings(city.shard(i, 3)) for i in range(3)]
    assert all(parts)
    merged: dict[tuple[str, str, str, int], Reading] = {}
    for part in parts:
        assert not merged.keys() & part.keys()
        merged.update(part)
    assert merged == whole
    assert sum(len(city.shard(i, 3).events) for i in range(3)) == len(city.events)
