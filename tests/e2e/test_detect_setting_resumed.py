"""`flow.detect` is the processor's setting at every start, for the nodes its recovery store
already holds as for new ones: switched off (a storm of false alerts) and restarted, the
processor raises no event for a node it knew, and switched on again it judges it again.
Real processor, journal and InfluxDB; the journal filled as the ingest fills it."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

from tests.conftest import CloudProcess
from tests.e2e import late_hospital as lh
from urbanpulse.clock import SystemClock, to_epoch_ns
from urbanpulse.influx_http import InfluxHTTP
from urbanpulse.wire import Reading, data_topic, encode_batch

pytestmark = [pytest.mark.stack, pytest.mark.slow]

MIN = 60 * 10**9


def _messages(site: str, nodes: tuple[str, ...], start: int, first: int, bad: bool) -> list[lh.Record]:
    """Ten minutes of a dust sensor per node, from minute `first`; with `bad`, the last
    reading's PM2.5 outside the contract's range (the fault rules' out_of_range)."""
    out = []
    for node in nodes:
        readings = [Reading("pm-1", "air.pm", start + i * MIN, i,
                            {"pm25": 5000.0 if bad and i == first + 9 else 12.0 + i % 3,
                             "pm10": 20.0 + i % 4})
                    for i in range(first, first + 10)]
        out.append((readings[-1].ts_ns + 10**9, data_topic(site, node), encode_batch(site, node, readings)))
    return sorted(out)


def _events(reader: InfluxHTTP, site: str) -> dict[str, int]:
    rows = reader.query_points(f"SELECT \"value\" FROM \"raw\".\"events\" WHERE \"site\" = '{site}' "
                               "AND \"type\" = 'out_of_range' GROUP BY \"node\"", db="urbanpulse")
    out: dict[str, int] = {}
    for r in rows:
        out[r["node"]] = out.get(r["node"], 0) + 1
    return out


def _run(cloud_factory: Callable[..., CloudProcess], tmp_path: Path, recs: list[lh.Record],
         offset: int, log: str, detect: bool) -> None:
    proc = cloud_factory("cloud", extra_args=("--no-ingest",), log_name=log, epoch_interval_s=0.2,
                         detect=detect)
    lh.append(tmp_path / "cloud" / "journal", recs)
    proc.start()
    lh.committed(tmp_path / "cloud" / "recovery", offset + len(recs))
    proc.stop()
    assert proc.proc is not None
    assert proc.proc.returncode == 0, proc.log()[-3000:]


def test_detect_switched_off_or_on_holds_for_the_nodes_the_recovery_store_knows(
        cloud_factory: Callable[..., CloudProcess], reader: InfluxHTTP, tmp_path: Path) -> None:
    site = f"det{int(time.time()) % 10**6}"
    now = to_epoch_ns(SystemClock().now() - timedelta(hours=2))
    start = now - now % MIN
    first = _messages(site, ("known",), start, 0, bad=True)
    _run(cloud_factory, tmp_path, first, 0, "on", detect=True)
    assert _events(reader, site) == {"known": 1}

    off = _messages(site, ("known", "new"), start, 10, bad=True)
    _run(cloud_factory, tmp_path, off, len(first), "off", detect=False)
    # neither the new node's nor the known one's: it went on raising them (its state said on)
    assert _events(reader, site) == {"known": 1}

    on = _messages(site, ("known", "new"), start, 20, bad=True)
    _run(cloud_factory, tmp_path, on, len(first) + len(off), "on-again", detect=True)
    assert _events(reader, site) == {"known": 2, "new": 1}
    types = reader.query_points(f"SELECT \"seq\" FROM \"raw\".\"events\" WHERE \"site\" = '{site}' "
                                "GROUP BY \"type\"", db="urbanpulse")
    assert {r["type"] for r in types} == {"out_of_range"}
