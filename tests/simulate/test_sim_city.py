from __future__ import annotations

import re
from pathlib import Path

import pytest

from urbanpulse.errors import ConfigError
from urbanpulse.simulate import DEFAULT_CITY, City
from urbanpulse.simulate.city import DRIVER_KINDS
from urbanpulse.wire import KINDS

SITE = re.compile(r"[a-z0-9][a-z0-9-]{0,31}")
SENSOR = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")

MINIMAL = """
[city]
name = "t"

[[district]]
id = "d"
name = "D"

[[intersection]]
site = "x1"
name = "X"
district = "d"

[[intersection.lane]]
sensor = "lane-a"
peak_vph = 600
"""


def test_default_city_parses_with_hospitals_intersections_and_stations(hanoi: City) -> None:
    assert 1 <= len(hanoi.hospitals) <= 3
    assert {h.site for h in hanoi.hospitals} == {"bach-mai", "viet-duc", "saint-paul"}
    assert hanoi.intersections
    assert hanoi.air_stations
    drivers = {s.driver for n in hanoi.nodes for s in n.sensors}
    assert drivers == set(DRIVER_KINDS)
    assert {h.district for h in hanoi.hospitals} <= {d.id for d in hanoi.districts}


def test_every_node_and_sensor_follows_the_wire_contract(hanoi: City) -> None:
    pairs = [(n.site, n.node) for n in hanoi.nodes]
    assert len(pairs) == len(set(pairs))
    for node in hanoi.nodes:
        assert SITE.fullmatch(node.site)
        assert SITE.fullmatch(node.node)
        ids = [s.id for s in node.sensors]
        assert len(ids) == len(set(ids))
        for s in node.sensors:
            assert SENSOR.fullmatch(s.id)
            assert s.kind in KINDS
            assert s.serial == (s.driver in ("sds011", "pms5003", "mhz19b"))


def test_city_load_reads_the_default_file() -> None:
    assert City.load(DEFAULT_CITY) == City.load()


def test_replicas_have_unique_valid_ids_and_keep_events_once(hanoi: City) -> None:
    big = hanoi.replicate(30)
    pairs = [(n.site, n.node) for n in big.nodes]
    assert len(pairs) == len(set(pairs)) == 30 * len(hanoi.nodes)
    assert all(SITE.fullmatch(site) for site, _ in pairs)
    assert big.events == hanoi.events


@pytest.mark.parametrize(("patch", "key"), [
    (("peak_vph = 600", "peak_vph = -1"), "intersection[0].lane[0].peak_vph"),
    (("peak_vph = 600", "peak_vph = \"many\""), "intersection[0].lane[0].peak_vph"),
    (("sensor = \"lane-a\"", "sensor = \"Lane A\""), "intersection[0].lane[0].sensor"),
    (("site = \"x1\"", "site = \"x1\"\ncolour = \"red\""), "intersection[0].colour"),
    (("district = \"d\"", "district = \"nowhere\""), "intersection[0].district"),
    (("name = \"t\"", "name = \"t\"\nutc_offset_hours = 30"), "city.utc_offset_hours"),
])
def test_bad_values_raise_config_errors_naming_the_key(patch: tuple[str, str], key: str) -> None:
    with pytest.raises(ConfigError) as err:
        City.parse(MINIMAL.replace(*patch, 1))
    assert err.value.key == key


@pytest.mark.parametrize("period", [7, 2400, 45.5])
def test_a_counting_period_must_divide_an_hour(period: float) -> None:
    """The demo gives the edge's loop and door drivers the city's periods as interval_s,
    which the edge refuses unless they divide an hour (hours of unequal time)."""
    with pytest.raises(ConfigError) as err:
        City.parse(MINIMAL.replace("peak_vph = 600", f"peak_vph = 600\nperiod_s = {period}", 1))
    assert err.value.key == "intersection[0].lane[0].period_s"
    assert "divide an hour" in str(err.value)
    ok = City.parse(MINIMAL.replace("peak_vph = 600", "peak_vph = 600\nperiod_s = 90", 1))
    assert ok.intersections[0].lanes[0].period_s == 90


def test_air_sensor_driver_must_be_an_air_driver() -> None:
    text = MINIMAL + """
[[air_station]]
site = "s"
node = "n"
name = "S"
district = "d"

[[air_station.sensor]]
id = "x"
driver = "bed_pad"
"""
    with pytest.raises(ConfigError) as err:
        City.parse(text)
    assert err.value.key == "air_station[0].sensor[0].driver"


def test_kiosk_windows_and_shares_are_checked() -> None:
    hospital = """
[[hospital]]
site = "h"
name = "H"
district = "d"

[hospital.outpatient]
node = "opd"
visits_per_day = 100

[[hospital.outpatient.kiosk]]
sensor = "k1"
share = 0.8
windows = [{ start = "11:00", end = "09:00", counters = 2 }]
"""
    with pytest.raises(ConfigError) as err:
        City.parse(MINIMAL + hospital)
    assert err.value.key == "hospital[0].outpatient.kiosk[0].windows[0]"
    fixed = hospital.replace('"11:00", end = "09:00"', '"07:00", end = "09:00"')
    two = fixed + '\n[[hospital.outpatient.kiosk]]\nsensor = "k2"\nshare = 0.5\n' \
        'windows = [{ start = "07:00", end = "09:00", counters = 1 }]\n'
    with pytest.raises(ConfigError) as err:
        City.parse(MINIMAL + two)
    assert err.value.key == "hospital[0].outpatient.kiosk"
    assert City.parse(MINIMAL + fixed).hospitals[0].outpatient is not None


@pytest.mark.parametrize(("event", "key"), [
    ('type = "incident"\nsite = "x1"\nnode = "cabinet"\nsensor = "nope"', "event[0].sensor"),
    ('type = "drift"\nsite = "x1"\nnode = "cabinet"\nsensor = "lane-a"', "event[0].sensor"),
    ('type = "incident"\nsite = "x1"\nnode = "cabinet"', "event[0].sensor"),
    ('type = "meteor"\nsite = "x1"', "event[0].type"),
    ('type = "surge"\nsite = "x1"', "event[0].site"),
    ('type = "incident"\nsite = "x1"\nnode = "cabinet"\nsensor = "lane-a"\nspeed_factor = 3',
     "event[0].speed_factor"),
    ('type = "incident"\nsite = "x1"\nnode = "cabinet"\nsensor = "lane-a"\nwobble = 1',
     "event[0].wobble"),
])
def test_events_are_checked_against_the_city(event: str, key: str) -> None:
    text = MINIMAL + f"\n[[event]]\n{event}\nstart_h = 1\nduration_h = 1\n"
    with pytest.raises(ConfigError) as err:
        City.parse(text)
    assert err.value.key == key


def test_not_toml_and_missing_file_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        City.parse("[city\nname=", "broken.toml")
    with pytest.raises(ConfigError, match="cannot read"):
        City.load(tmp_path / "absent.toml")


def test_replicas_of_long_site_ids_never_merge_two_sites(hanoi: City) -> None:
    # Cut to fit their -rNNNN suffix, these two ids would give one site in every copy,
    # whose "cabinet" node would carry both intersections' lanes.
    a, b = "intersection-nga-tu-so-dong-da-a", "intersection-nga-tu-so-dong-da-b"
    text = DEFAULT_CITY.read_text(encoding="utf-8")
    city = City.parse(text.replace('"nga-tu-so"', f'"{a}"').replace('"kim-lien"', f'"{b}"'))
    assert len(city.replicate(1).nodes) == len(hanoi.nodes)
    with pytest.raises(ConfigError, match=r"^replicas: copy 1 of site .* already a copy of"):
        city.replicate(2)
    clash = City.parse(text.replace('"trang-thi"', '"cau-giay-r0001"'))
    with pytest.raises(ConfigError, match=r"'cau-giay-r0001', already site 'cau-giay-r0001'"):
        clash.replicate(2)
