"""The InfluxDB cost benchmark's bookkeeping: the config it gives influxd, the requests it
makes of the processor's points, and one real measured write to a private influxd (its
points all stored, its CPU counted). No timing is asserted: the numbers belong to the machine."""

from __future__ import annotations

import json
import tomllib
from dataclasses import asdict
from pathlib import Path

import pytest

from bench.influx.measure import CALL_POINTS, Sample, Sender, requests, write_once
from bench.influx.points import (
    PointSet,
    count_and_means,
    in_seconds,
    make_points,
    series_key,
    shifted,
    timestamp,
    without_seq,
)
from bench.influx.report import main as report_main
from bench.influx.report import summarise, table
from bench.influx.server import Server, with_settings
from bench.influx.variants import Rewrite, Variant, select
from cloud.logic.records import RP_1H, RP_1M, RP_RAW
from urbanpulse.stack import influxd
from urbanpulse.stack.config import StackConfig
from urbanpulse.stack.layout import Layout

RAW = "hospital_bed,kind=hospital.bed,node=w,sensor=bed-1,site=s occupied=1.0,seq=648i 1795840413887958648"
ROLLUP = ("air_pm,kind=air.pm,node=n,sensor=p\\ 1,site=s count=3i,pm25_mean=1.5,pm25_min=1.0,"
          "pm25_max=2.0,pm25_last=2.0 1795840380000000000")


@pytest.fixture(scope="module")
def points() -> PointSet:
    return make_points(3000)


def test_settings_replace_add_and_append_to_the_stacks_config(tmp_path: Path) -> None:
    text = influxd.render_config(StackConfig(home=tmp_path), Layout(tmp_path))
    changed = with_settings(text, {"data": {"wal-fsync-delay": '"100ms"', "max-concurrent-compactions": "1"},
                                   "logging": {"level": '"warn"'}, "retention": {"enabled": "false"}})
    before, after = tomllib.loads(text), tomllib.loads(changed)
    assert after["data"]["wal-fsync-delay"] == "100ms"
    assert after["data"]["max-concurrent-compactions"] == 1
    assert after["logging"]["level"] == "warn"
    assert after["retention"] == {"enabled": False}
    for section in ("data", "logging"):
        after[section] = {k: v for k, v in after[section].items()
                          if k not in ("wal-fsync-delay", "max-concurrent-compactions", "level")}
        before[section] = {k: v for k, v in before[section].items() if k not in ("wal-fsync-delay", "level")}
    del after["retention"]
    assert after == before


def test_line_rewrites() -> None:
    assert series_key(ROLLUP) == "air_pm,kind=air.pm,node=n,sensor=p\\ 1,site=s"
    assert timestamp(shifted(RAW, 10)) == 1795840413887958658
    assert in_seconds(ROLLUP).endswith(" 1795840380")
    with pytest.raises(Exception, match="whole second"):
        in_seconds(RAW)
    assert without_seq(RAW) == RAW.replace(",seq=648i", "")
    assert count_and_means(ROLLUP) == ("air_pm,kind=air.pm,node=n,sensor=p\\ 1,site=s "
                                       "count=3i,pm25_mean=1.5 1795840380000000000")


def test_requests_follow_the_sinks_shape(points: PointSet) -> None:
    base = Variant("b", "")
    reqs = requests(points, base, 0)
    assert sorted(ln for r in reqs for ln in r.lines) == sorted(ln for _, ln in points.points)
    assert all(len(r.lines) <= 5000 and r.precision == "ns" for r in reqs)
    assert {r.rp for r in reqs} == {RP_RAW, RP_1M, RP_1H}
    small = requests(points, Variant("s", "", batch_lines=700), 0)
    assert max(len(r.lines) for r in small) == 700
    # One sink call per CALL_POINTS points: each rp's lines in their order within it.
    assert len(points.points) < CALL_POINTS
    raw = [ln for rp, ln in points.points if rp == RP_RAW]
    assert [ln for r in small if r.rp == RP_RAW for ln in r.lines] == raw

    later = requests(points, base, points.span_ns)
    first = min(timestamp(ln) for r in reqs for ln in r.lines)
    assert min(timestamp(ln) for r in later for ln in r.lines) == first + points.span_ns
    assert max(timestamp(ln) for r in reqs for ln in r.lines) < first + points.span_ns

    secs = requests(points, Variant("s", "", aggregates_in_seconds=True), 0)
    assert {r.precision for r in secs if r.rp == RP_RAW} == {"ns"}
    assert {r.precision for r in secs if r.rp != RP_RAW} == {"s"}
    only = requests(points, Variant("o", "", only_rp=RP_1M), 0)
    assert {r.rp for r in only} == {RP_1M}
    fewer = requests(points, Variant("f", "", rewrite=Rewrite.NO_SEQ), 0)
    assert not any(",seq=" in ln for r in fewer if r.rp == RP_RAW for ln in r.lines)


def _stored_raw_points(server: Server) -> int:
    with server.client("admin") as admin:
        rows = admin.query_points('SELECT count("seq") FROM "raw"./.*/', db=server.database)
    return sum(int(r["count"]) for r in rows)


def test_a_measured_write_stores_every_point_and_counts_influxds_cpu(points: PointSet,
                                                                      tmp_path: Path) -> None:
    variant = select(["gzip"])[1]
    server = Server(tmp_path / "home", {"logging": {"level": '"warn"'}}, {"GOGC": "150"})
    try:
        server.start()
        assert server.pid is not None
        assert 'level = "warn"' in server.layout.influx_conf.read_text()
        # The variant's environment over the stack's (GOGC=200).
        environ = Path(f"/proc/{server.pid}/environ").read_bytes().split(b"\0")
        assert [v for v in environ if v.startswith(b"GOGC=")] == [b"GOGC=150"]
        sender = Sender(server.url(), "writer", server.password("writer"), server.database)
        try:
            reqs = requests(points, variant, 0)
            sample = write_once(sender, server.pid, reqs, variant, 1)
            again = write_once(sender, server.pid, requests(points, variant, points.span_ns), variant, 2)
        finally:
            sender.close()
        raw = {(series_key(ln), timestamp(ln)) for rp, ln in points.points if rp == RP_RAW and ",seq=" in ln}
        assert _stored_raw_points(server) == 2 * len(raw)
    finally:
        server.stop()
    assert server.pid is None
    assert sample.points == again.points == len(points.points)
    assert sample.requests == len(reqs)
    assert sample.influxd_cpu_s > 0
    assert sample.client_cpu_s > 0
    assert sample.write_s > 0
    # VmHWM is not monotonic as read: the kernel reports max(its high-water mark, the
    # current RSS) and raises the mark lazily, so a later read can show less. Hence no
    # order between the rounds' peaks; the report takes their maximum.
    for s in (sample, again):
        assert s.peak_rss_kb is not None
        assert s.rss_kb is not None
        assert s.anon_rss_kb is not None
        assert s.peak_rss_kb >= s.rss_kb > s.anon_rss_kb > 0
    summary = summarise([sample, again])[0]
    assert summary.rounds == 2
    assert summary.influxd_min <= summary.influxd_median
    assert summary.influxd_mean == pytest.approx(
        (sample.influxd_cpu_s + again.influxd_cpu_s) / (2 * len(points.points)) * 100_000)
    assert f"| gzip | {len(points.points):,} |" in table(summarise([sample, again]))
    assert summary.peak_rss_mb == pytest.approx(
        max(s.peak_rss_kb or 0 for s in (sample, again)) / 1024)



def test_report_pairs_each_round_with_base_and_reads_a_runs_samples(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def sample(variant: str, round_no: int, cpu: float, rss_mb: int) -> Sample:
        return Sample(variant, round_no, 200_000, 40, cpu, 0.1, 2.0,
                      (rss_mb + 50) * 1024, rss_mb * 1024, (rss_mb - 10) * 1024)

    samples = [sample("base", 1, 1.0, 100), sample("gzip", 1, 1.2, 150), sample("base", 2, 2.0, 300),
               sample("gzip", 2, 2.2, 250), sample("base", 3, 1.0, 200), sample("gzip", 3, 1.3, 200)]
    by_name = {s.variant: s for s in summarise(samples)}
    gzip = by_name["gzip"]
    assert gzip.paired == pytest.approx(1.2)  # rounds: 1.2, 1.1, 1.3
    assert (gzip.peak_rss_mb, gzip.rss_mb, gzip.anon_rss_mb) == (300, 200, 190)  # max, medians
    assert gzip.influxd_median == pytest.approx(0.65)  # 1.3 s per 200,000 points
    assert gzip.vs(by_name["base"]) == pytest.approx((1.3, 4.7 / 4.0))
    path = tmp_path / "samples.json"
    path.write_text(json.dumps([asdict(s) for s in samples]))
    assert report_main([str(path)]) == 0
    # mean: 4.7 s over 600,000 points
    row = "| gzip | 200,000 | 0.600 / 0.650 / 0.783 | 1.30, 1.18, 1.20 | 0.050 | 100,000 | 300 | 200 (190) |"
    out = capsys.readouterr().out
    assert row in out
    assert "| base | 150 / 100 | 350 / 300 | 250 / 200 |" in out  # per round: peak / RSS
    # Samples of runs before memory was kept still load; their memory is "-".
    old = [{k: v for k, v in asdict(s).items() if "rss" not in k} for s in samples]
    path.write_text(json.dumps(old))
    assert report_main([str(path)]) == 0
    out = capsys.readouterr().out
    assert "| 0.050 | 100,000 | - | - (-) |" in out
    assert "| base | - / - | - / - | - / - |" in out
    path.write_text('[{"variant": "base"}]')
    assert report_main([str(path)]) == 1
