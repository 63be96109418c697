"""`urbanpulse cloud recompute` rebuilds a site's per-sensor agg_1m/agg_1h windows too, on
the real InfluxDB: a store holding the raw points of the domain replay scenario
(tests/cloud/logic/test_domain_replay.py: beds, traffic loops with 600 s intervals, air)
but no aggregate, as after a processor that ran without the reader, ends with exactly the
windows in-order processing (cloud.logic.node.NodeState) gives over [from, to)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cloud.cli import main as cloud_main
from cloud.config import load_cloud_config
from cloud.logic.domain_replay import series_tags
from cloud.logic.records import RP_1H, RP_1M, RP_RAW
from cloud.sink import make_writer
from cloud.stack_config import cloud_config_for_stack, to_toml
from tests.cloud.logic.domain_helpers import final
from tests.cloud.logic.test_domain_replay import DOWN, in_order, run
from tests.cloud.test_domain_replay_influx import _iso, _moved, _numbers, _scenario
from urbanpulse.influx_http import InfluxHTTP
from urbanpulse.stack import StackInfo
from urbanpulse.wire.kinds import KINDS

HOUR = 3600 * 10**9
MEASUREMENTS = sorted({k.measurement for k in KINDS.values()})
TAGS = ("kind", "node", "sensor", "site")


def _stored(reader: InfluxHTTP, db: str, site: str) -> dict[Any, dict[str, object]]:
    """The per-sensor windows InfluxDB holds for `site`, keyed as `final` keys them."""
    out: dict[Any, dict[str, object]] = {}
    for rp in (RP_1M, RP_1H):
        for name in MEASUREMENTS:
            for row in reader.query_points(f'SELECT * FROM "{rp}"."{name}" WHERE "site" = \'{site}\'',
                                           db=db):
                tags = tuple(sorted((k, row[k]) for k in TAGS if row.get(k)))
                fields = {k: v for k, v in row.items()
                          if k not in TAGS and k != "time" and v is not None}
                out[(rp, name, tags, int(row["time"]))] = _numbers(fields)
    return out


def test_recompute_command_rebuilds_the_per_sensor_windows_from_the_raw_points(
        db_ready: StackInfo, reader: InfluxHTTP, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    shift, suffix = _scenario()
    config_path = tmp_path / "cloud.toml"
    config_path.write_text(to_toml(cloud_config_for_stack(db_ready, tmp_path / "state")))
    points = run(_moved(in_order(), shift, suffix), replays=False)
    writer = make_writer(load_cloud_config(config_path).influx)
    writer.write([p for p in points if p[0] == RP_RAW])  # the raw points only: no aggregate yet
    writer.close()
    # the in-order windows of the readings' measurements (not the domain rollups)
    aggregates = final([p for p in points if p[0] in (RP_1M, RP_1H)])
    in_order_windows = {k: _numbers(v) for k, v in aggregates.items() if k[1] in MEASUREMENTS}
    lo, hi = DOWN + shift, DOWN + 4 * HOUR + shift
    for site in (f"bv-{suffix}", f"hk-{suffix}"):  # beds; traffic loops (intervals) and air
        assert _stored(reader, db_ready.database, site) == {}
        rc = cloud_main(["recompute", "--config", str(config_path), "--site", site,
                         "--from", _iso(lo + HOUR // 2), "--to", _iso(hi - HOUR // 2)])  # widened
        assert rc == 0
        out = capsys.readouterr().out
        expected = {k: v for k, v in in_order_windows.items()
                    if dict(k[2])["site"] == site and lo <= k[3] < hi}
        kinds = {dict(k[2])["kind"] for k in expected}
        assert kinds == ({"hospital.bed"} if site.startswith("bv") else
                         {"traffic.loop", "air.pm", "air.co2"})
        assert {k[0] for k in expected} == {RP_1M, RP_1H}
        assert _stored(reader, db_ready.database, site) == expected
        assert f"{site} windows [" in out
        assert f"sensors, {len(expected)} windows written" in out
        # run again: the same windows, overwritten
        assert cloud_main(["recompute", "--config", str(config_path), "--site", site,
                           "--from", _iso(lo), "--to", _iso(hi)]) == 0
        assert _stored(reader, db_ready.database, site) == expected


def test_a_series_key_s_tags_are_read_with_line_protocol_s_escapes() -> None:
    assert series_tags(r"air_pm,kind=air.pm,node=a\,b,sensor=x\ y,site=s\=t") == {
        "kind": "air.pm", "node": "a,b", "sensor": "x y", "site": "s=t"}
