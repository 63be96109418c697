"""A small city written once into the session's real InfluxDB through the processor's own
code (NodeState, HospitalSite, InfluxWriter), so the tests read the real schema.

Every value the tests check is set here by hand. The site name is unique to the run, so
other tests' data in the shared database never matches the filters.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bench.influx.server import Server
from cloud.logic.domain.hospital_site import HospitalSite
from cloud.logic.events import EVENTS, NODE_KIND
from cloud.logic.lines import line
from cloud.logic.node import NodeState
from cloud.logic.records import RP_RAW, NodeData, Point, dead_letter_point
from cloud.sink import InfluxWriter
from urbanpulse.clock import to_epoch_ns
from urbanpulse.influx_http import InfluxHTTP
from urbanpulse.stack import StackInfo
from urbanpulse.wire import Reading

from .scratch_influx import HORIZON_NS, LIMIT, fill, scratch_influx


@dataclass(frozen=True)
class City:
    site: str
    base: datetime  # an hour's start, three hours ago: within every retention policy

    def at(self, seconds: float) -> datetime:
        return self.base + timedelta(seconds=seconds)


def _ns(city: City, seconds: float) -> int:
    return to_epoch_ns(city.at(seconds))


def _readings(city: City) -> dict[str, list[Reading]]:
    pm = "air.pm"
    loop = "traffic.loop"
    return {
        "air-1": [
            Reading("pm-1", pm, _ns(city, 10), 0, {"pm25": 12.0, "pm10": 20.0}),
            Reading("pm-2", pm, _ns(city, 10), 10, {"pm25": 8.0, "pm10": 9.0}),
            Reading("pm-1", pm, _ns(city, 40), 1, {"pm25": 14.0, "pm10": 22.5}),
            Reading("pm-1", pm, _ns(city, 40), 1, {"pm25": 14.0, "pm10": 22.5}),  # redelivered
            Reading("pm-1", pm, _ns(city, 70), 2, {"pm25": 1.0, "pm10": 30.0}, ("calibrating",)),
            # seq 3 never arrives; seq 4 is outside the contract's range (pm25 <= 1000)
            Reading("pm-1", pm, _ns(city, 130), 4, {"pm25": 5000.0, "pm10": 10.0}),
        ],
        "int-1": [
            Reading("lane-1", loop, _ns(city, 20), 0,
                    {"count": 10.0, "interval_s": 30.0, "occupancy_pct": 20.0, "speed_kmh": 40.0}),
            Reading("lane-1", loop, _ns(city, 50), 1,
                    {"count": 20.0, "interval_s": 30.0, "occupancy_pct": 40.0, "speed_kmh": 50.0}),
            Reading("lane-2", loop, _ns(city, 50), 0,
                    {"count": 6.0, "interval_s": 60.0, "occupancy_pct": 10.0, "speed_kmh": 30.0}),
        ],
        "ward-1": [
            Reading("bed-1", "hospital.bed", _ns(city, 5), 0, {"occupied": 1.0}),
            Reading("bed-2", "hospital.bed", _ns(city, 5), 0, {"occupied": 1.0}),
            Reading("bed-3", "hospital.bed", _ns(city, 5), 0, {"occupied": 0.0}),
        ],
    }


def city_points(city: City) -> list[Point]:
    points: list[Point] = []
    hospital = HospitalSite(HORIZON_NS)
    for node, readings in _readings(city).items():
        state = NodeState(HORIZON_NS, detect=True)
        points += state.process(NodeData(f"{city.site}/{node}", city.site, node,
                                          _ns(city, 200), readings))
        points += hospital.process(city.site, state.take_site_updates())
    # A whole node's event (no sensor tag) and a dead letter, as the processor writes them.
    points.append((RP_RAW, line(EVENTS, {"site": city.site, "node": "air-1", "sensor": "",
                                         "kind": NODE_KIND, "type": "clock_jump"},
                                {"field": "clock_jumps", "value": 1.0, "delay_s": 0.0,
                                 "detail": "the agent's clock stepped"}, _ns(city, 150))))
    points.append(dead_letter_point(city.site, "air-1", "not_json", "payload is not UTF-8 JSON",
                                    b"{oops", 4096, _ns(city, 160), "urbanpulse/v1/x/air-1/data", 7,
                                    "i0"))
    return points


@pytest.fixture(scope="session")
def city(db_ready: StackInfo) -> City:
    now = datetime.now(UTC)
    base = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=3)
    written = City(f"q-{uuid.uuid4().hex[:10]}", base)
    write_points(db_ready, city_points(written))
    return written


def write_points(db_ready: StackInfo, points: list[Point]) -> None:
    """Through the processor's own writer, as the writer user; none refused."""
    creds = db_ready.influx("writer")
    with InfluxHTTP(creds.url, creds.username, creds.password()) as client:
        writer = InfluxWriter(client, db_ready.database, 5000)
        writer.write(points)
        assert writer.stats.refused_requests == 0, writer.stats.last_error


@pytest.fixture(scope="session")
def limited_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """An InfluxDB of its own whose max-row-limit is LIMIT, filled (scratch_influx.fill)."""
    with scratch_influx(Path(tmp_path_factory.mktemp("influx")), LIMIT) as server:
        with server.client("admin") as client:
            fill(client)
        yield server


@pytest.fixture
def limited(limited_server: Server) -> Iterator[InfluxHTTP]:
    """The admin's client of `limited_server`."""
    with limited_server.client("admin") as client:
        yield client
