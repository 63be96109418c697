"""`urbanpulse query` end to end on the session's InfluxDB: CSV that pandas reads back equal
to the API's frame, and the exit codes."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from cloud.logic.lines import line
from cloud.query import CityData, read_csv
from cloud.query.cli import main
from cloud.stack_config import cloud_config_for_stack, to_toml
from tests.netfault import proxy_for_url
from urbanpulse.clock import to_epoch_ns
from urbanpulse.influx_http import InfluxError, InfluxHTTP
from urbanpulse.stack import StackInfo

from .conftest import City

pytestmark = pytest.mark.stack


def write_config(db_ready: StackInfo, tmp_path: Path, **influx: object) -> Path:
    config = cloud_config_for_stack(db_ready, tmp_path / "state")
    config["influx"].update(influx)
    config["influx"] = {k: v for k, v in config["influx"].items() if v is not None}
    path = tmp_path / "cloud.toml"
    path.write_text(to_toml(config))
    return path


def window(city: City) -> list[str]:
    return ["--start", city.base.isoformat(), "--end", (city.base + timedelta(hours=1)).isoformat()]


def read_back(text: str, sidecar: Path) -> pd.DataFrame:
    """CSV written to stdout, read with the sidecar `--dtypes` wrote."""
    return read_csv(io.StringIO(text), sidecar)


@pytest.fixture(scope="module")
def status(db_ready: StackInfo, city: City) -> City:
    """A node status report on the city's site, as the processor stores one."""
    report = line("node_status", {"site": city.site, "node": "air-1"},
                  {"outbox_depth": 3.0, "state": "ok"}, to_epoch_ns(city.at(30)))
    counts = [line("driver_status", {"site": city.site, "node": "air-1", "sensor": sensor},
                   {"checksum_errors": 3, "bytes_skipped": 41, "malformed": 0}, to_epoch_ns(city.at(30)))
              for sensor in ("pm-1", "pm-2")]
    creds = db_ready.influx("writer")
    with InfluxHTTP(creds.url, creds.username, creds.password()) as writer:
        writer.write("\n".join([report, *counts]).encode(), db=db_ready.database, rp="raw")
    return city


@pytest.mark.parametrize(("command", "expected"), [
    (["readings", "air.pm"], lambda d, c: d.readings("air.pm", *span(c), site=c.site)),
    (["aggregates", "air.pm", "--resolution", "1h", "--sensor", "pm-1", "--field", "count",
      "--field", "pm25_mean"],
     lambda d, c: d.aggregates("air.pm", *span(c), resolution="1h", site=c.site, sensor="pm-1",
                               fields=["count", "pm25_mean"])),
    (["ledger"], lambda d, c: d.ledger(*span(c), site=c.site)),
    (["events"], lambda d, c: d.events(*span(c), site=c.site)),
    (["events", "--type", "clock_jump"], lambda d, c: d.events(*span(c), site=c.site, type="clock_jump")),
    (["rollup", "traffic_lane", "--resolution", "1m"],
     lambda d, c: d.lane_traffic(*span(c), site=c.site)),
    (["dead-letters"], lambda d, c: d.dead_letters(*span(c), site=c.site)),
    (["node-status"], lambda d, c: d.node_status(*span(c), site=c.site)),
    (["driver-status", "--sensor", "pm-1"],
     lambda d, c: d.driver_status(*span(c), site=c.site, sensor="pm-1")),
    (["measurement", "air_pm", "--tag", "sensor=pm-1", "--field", "pm10"],
     lambda d, c: d.measurement("air_pm", *span(c), tags={"site": c.site, "sensor": "pm-1"},
                                fields=["pm10"])),
])
def test_csv_reads_back_equal_to_the_frame(db_ready: StackInfo, reader: InfluxHTTP, status: City,
                                           tmp_path: Path, command: list[str], expected: object) -> None:
    config = write_config(db_ready, tmp_path)
    out = tmp_path / "out.csv"
    assert main([*command, "--config", str(config), *window(status), "--site", status.site,
                 "-o", str(out)]) == 0
    frame = expected(CityData(reader, db_ready.database), status)  # type: ignore[operator]
    assert len(frame) > 0
    assert (tmp_path / "out.csv.dtypes.json").exists()
    pd.testing.assert_frame_equal(read_csv(out), frame, check_exact=True)


def span(city: City) -> tuple[datetime, datetime]:
    return city.base, city.base + timedelta(hours=1)


def test_output_file_and_the_installed_command(db_ready: StackInfo, reader: InfluxHTTP, city: City,
                                               tmp_path: Path) -> None:
    config = write_config(db_ready, tmp_path)
    out = tmp_path / "ledger.csv"
    done = subprocess.run(
        [sys.executable, "-m", "urbanpulse.cli", "query", "ledger", "--config", str(config),
         "--start", city.base.isoformat().replace("+00:00", "Z"),
         "--end", (city.base + timedelta(hours=8)).astimezone().isoformat(),
         "--site", city.site, "-o", str(out)],
        capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    frame = CityData(reader, db_ready.database).ledger(*span(city), site=city.site)
    pd.testing.assert_frame_equal(read_csv(out), frame)
    assert list(tmp_path.glob("*.part")) == []


def test_a_reader_that_stops_reading_ends_the_command_quietly(db_ready: StackInfo, city: City,
                                                            tmp_path: Path) -> None:
    """`urbanpulse query ... | head`: the pipe's reader is gone before the first row."""
    config = write_config(db_ready, tmp_path)
    with subprocess.Popen(
            [sys.executable, "-m", "urbanpulse.cli", "query", "readings", "air.pm", "--config", str(config),
             *window(city), "--site", city.site],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        assert proc.stdout is not None
        assert proc.stderr is not None
        proc.stdout.close()
        err = proc.stderr.read()
        assert proc.wait(timeout=60) == 0, err
    assert err == ""


def test_naive_time_is_refused_by_name(db_ready: StackInfo, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(db_ready, tmp_path)
    with pytest.raises(SystemExit) as stop:
        main(["ledger", "--config", str(config), "--start", "2026-01-01T00:00:00",
              "--end", "2026-01-02T00:00:00Z"])
    assert stop.value.code == 2
    assert "argument --start: '2026-01-01T00:00:00' has no zone" in capsys.readouterr().err


@pytest.mark.parametrize(("args", "message"), [
    (["readings", "air.ozone"], "kind: unknown kind 'air.ozone'"),
    (["rollup", "air_quality", "--resolution", "1m"], "resolution: air_quality is stored per hour"),
    (["events", "--type", "meteor"], "type: unknown event type 'meteor'"),
    (["readings", "air.pm", "--field", "pm3"], "fields: 'pm3' not stored in raw.air_pm"),
])
def test_bad_arguments_exit_2(db_ready: StackInfo, city: City, tmp_path: Path,
                              capsys: pytest.CaptureFixture[str], args: list[str], message: str) -> None:
    config = write_config(db_ready, tmp_path)
    assert main([*args, "--config", str(config), *window(city)]) == 2
    assert message in capsys.readouterr().err


def test_config_without_reader_credentials_exit_2_with_the_key(
        db_ready: StackInfo, city: City, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(db_ready, tmp_path, reader_password_file=None)
    assert main(["ledger", "--config", str(config), *window(city)]) == 2
    assert "influx.reader_password_file: missing" in capsys.readouterr().err
    config = write_config(db_ready, tmp_path, reader_password_file=str(tmp_path / "absent"))
    assert main(["ledger", "--config", str(config), *window(city)]) == 2
    assert "influx.reader_password_file: " in capsys.readouterr().err


def test_wrong_reader_password_exit_1(db_ready: StackInfo, city: City, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    wrong = tmp_path / "reader.password"
    wrong.write_text("not-it\n")
    config = write_config(db_ready, tmp_path, reader_password_file=str(wrong))
    out = tmp_path / "x.csv"
    assert main(["ledger", "--config", str(config), *window(city), "-o", str(out)]) == 1
    assert "refused the credentials" in capsys.readouterr().err
    assert not out.exists()
    assert list(tmp_path.glob("*.part")) == []


def test_queries_use_the_reader_not_the_writer(db_ready: StackInfo, city: City, tmp_path: Path) -> None:
    config = write_config(db_ready, tmp_path)
    with CityData.from_config(config) as data:
        assert len(data.ledger(*span(city), site=city.site)) == 3
        # the config also names the writer; the client built from it may only read
        with pytest.raises(InfluxError) as refused:
            data.client.write(b"probe v=1i 1", db=db_ready.database, rp="raw")
        assert refused.value.status == 403


def test_csv_of_several_chunks_the_first_empty(db_ready: StackInfo, reader: InfluxHTTP, city: City,
                                               tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(db_ready, tmp_path)
    start, end = city.base - timedelta(hours=2), city.base + timedelta(hours=1)
    chunks = list(CityData(reader, db_ready.database).iter_readings("air.pm", start, end, site=city.site))
    assert [len(c) for c in chunks] == [0, 5]  # raw starts with 1 h chunks: an empty one, then data
    sidecar = tmp_path / "types.json"
    assert main(["readings", "air.pm", "--config", str(config), "--start", start.isoformat(),
                 "--end", end.isoformat(), "--site", city.site, "--dtypes", str(sidecar)]) == 0
    text = capsys.readouterr().out
    assert text.count("time,") == 1  # one header
    pd.testing.assert_frame_equal(read_back(text, sidecar), chunks[1])


def test_generic_measurement_with_tag_filters(db_ready: StackInfo, reader: InfluxHTTP, city: City,
                                              tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(db_ready, tmp_path)
    sidecar = tmp_path / "types.json"
    assert main(["measurement", "ledger", "--rp", "agg_1h", "--tag", "node=air-1", "--field", "missing",
                 "--config", str(config), *window(city), "--site", city.site,
                 "--dtypes", str(sidecar)]) == 0
    frame = CityData(reader, db_ready.database).measurement(
        "ledger", *span(city), rp="agg_1h", tags={"site": city.site, "node": "air-1"}, fields=["missing"])
    assert frame["missing"].tolist() == [1]
    pd.testing.assert_frame_equal(read_back(capsys.readouterr().out, sidecar), frame)


def test_a_site_tag_adds_to_site_it_does_not_replace_it(
        db_ready: StackInfo, city: City, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`--site A --tag site=B` reads both sites, as `--site A --site B` does: the tag
    replaced --site without a word (found by review)."""
    config = write_config(db_ready, tmp_path)
    args = ["measurement", "ledger", "--rp", "agg_1h", "--tag", "node=air-1", "--field", "missing",
            "--config", str(config), *window(city)]
    assert main([*args, "--site", city.site, "--tag", f"site={city.site}-none"]) == 0
    both = capsys.readouterr().out.splitlines()
    assert main([*args, "--site", f"{city.site}-none", "--site", city.site]) == 0
    assert capsys.readouterr().out.splitlines() == both
    assert len(both) == 2  # the header and the seeded site's row


def test_nothing_found_writes_the_header_only(db_ready: StackInfo, reader: InfluxHTTP, city: City,
                                              tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(db_ready, tmp_path)
    sidecar = tmp_path / "types.json"
    assert main(["ledger", "--config", str(config), *window(city), "--site", city.site + "-none",
                 "--dtypes", str(sidecar)]) == 0
    text = capsys.readouterr().out
    assert text.splitlines() == [
        "time,site,node,duplicates,expected,late,missing,received,restarts,completeness"]
    frame = CityData(reader, db_ready.database).ledger(*span(city), site=city.site + "-none")
    pd.testing.assert_frame_equal(read_back(text, sidecar), frame)



# (seconds from the city's hour, fields); the first an hour before, in another chunk
ODD: list[tuple[int, dict[str, float | int | str | bool]]] = [
    (-3600, {"text": "a,b", "flag": True, "count": 2**63 - 1, "value": 0.1 + 0.2}),
    (1, {"text": 'say "hi", twice', "count": -5}),
    (2, {"text": "null", "flag": False, "value": 1e-300}),
    (3, {"text": "NaN", "count": 0}),
    (4, {"value": 2 / 3, "flag": True}),
    (6, {"text": "", "count": 1}),  # an empty string, where (4) has none
    (7, {"text": 'x,"",y'}),  # a quoted empty field inside a quoted field
    (8, {"text": '""'}),
]
# a raw newline inside a quoted string field is stored as it is; so is a backslash
NEWLINE = 'q_odd,site={site} text="two\nlines, \\\\ end\\\\" {at}'


def test_csv_round_trips_exactly(db_ready: StackInfo, reader: InfluxHTTP, city: City,
                                 influx_client: Callable[[str | None], InfluxHTTP], tmp_path: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    # whole seconds an hour before, +5 ns stamps in the hour: chunks needing other digits
    lines = [line("q_odd", {"site": city.site}, fields, to_epoch_ns(city.at(at)) + 5 * (at > 0))
             for at, fields in ODD]
    lines.append(NEWLINE.format(site=city.site, at=to_epoch_ns(city.at(5))))
    influx_client("writer").write("\n".join(lines).encode(), db=db_ready.database, rp="raw")
    start, end = city.base - timedelta(hours=1), city.base + timedelta(hours=1)
    frame = CityData(reader, db_ready.database).measurement("q_odd", start, end,
                                                            tags={"site": city.site})
    assert frame["text"].tolist() == ["a,b", 'say "hi", twice', "null", "NaN", None,
                                      "two\nlines, \\ end\\", "", 'x,"",y', '""']
    assert [str(t) for t in frame.dtypes] == ["object", "Int64", "boolean", "object", "float64"]
    out = tmp_path / "odd.csv"
    config = write_config(db_ready, tmp_path)
    assert main(["measurement", "q_odd", "--config", str(config), "--site", city.site,
                 "--start", start.isoformat(), "--end", end.isoformat(), "-o", str(out)]) == 0
    back = read_csv(out)
    pd.testing.assert_frame_equal(back, frame, check_exact=True)
    assert back["text"].iloc[6] == ""  # the empty string, not a missing one
    assert back["text"].iloc[4] is None
    assert back.index[1] == pd.Timestamp(city.at(1)) + pd.Timedelta(5, "ns")


def test_output_replaces_a_file_whole_and_leaves_others_alone(
        db_ready: StackInfo, city: City, tmp_path: Path) -> None:
    out = tmp_path / "ledger.csv"
    out.write_text("old\n")
    mine = tmp_path / "ledger.csv.part"  # a file of the analyst's that happens to have that name
    mine.write_text("keep me\n")
    config = write_config(db_ready, tmp_path)
    assert main(["ledger", "--config", str(config), *window(city), "--site", city.site,
                 "-o", str(out)]) == 0
    assert out.read_text().startswith("time,site,node,")
    assert mine.read_text() == "keep me\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cloud.toml", "ledger.csv",
                                                          "ledger.csv.dtypes.json",
                                                          "ledger.csv.part"]


def test_output_into_a_missing_directory_names_the_argument(
        db_ready: StackInfo, city: City, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(db_ready, tmp_path)
    assert main(["ledger", "--config", str(config), *window(city),
                 "-o", str(tmp_path / "nowhere" / "x.csv")]) == 2
    assert "--output: " in capsys.readouterr().err


def test_dtypes_into_a_missing_directory_names_the_option_and_writes_nothing(
        db_ready: StackInfo, city: City, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(db_ready, tmp_path)
    out = tmp_path / "ledger.csv"
    assert main(["ledger", "--config", str(config), *window(city), "-o", str(out),
                 "--dtypes", str(tmp_path / "nowhere" / "t.json")]) == 2
    assert "--dtypes: " in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cloud.toml"]


def test_a_query_into_a_silent_database_fails_after_the_configs_timeout(
        db_ready: StackInfo, city: City, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`influx.timeout_s` of the config bounds each request, as it does the processor's."""
    with proxy_for_url(db_ready.influx_url) as proxy:
        config = write_config(db_ready, tmp_path, url=f"http://127.0.0.1:{proxy.port}", timeout_s=0.5)
        assert main(["ledger", "--config", str(config), *window(city)]) == 0  # the link works
        capsys.readouterr()
        proxy.partition()
        started = time.monotonic()
        assert main(["ledger", "--config", str(config), *window(city)]) == 1
        # well before the 30 s a client without the config's value would wait
        assert time.monotonic() - started < 10
        assert "timed out" in capsys.readouterr().err


def test_the_output_file_gets_the_mode_the_umask_allows(db_ready: StackInfo, city: City,
                                                        tmp_path: Path) -> None:
    config = write_config(db_ready, tmp_path)
    out = tmp_path / "ledger.csv"
    mask = os.umask(0o027)
    try:
        assert main(["ledger", "--config", str(config), *window(city), "-o", str(out)]) == 0
    finally:
        os.umask(mask)
    assert out.stat().st_mode & 0o777 == 0o640
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".part")] == []


def test_dtypes_on_the_output_itself_is_refused_before_any_query(
        db_ready: StackInfo, city: City, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The sidecar renamed first, then the CSV over it: one of the pair would be lost."""
    config = write_config(db_ready, tmp_path)
    out = tmp_path / "ledger.csv"
    assert main(["ledger", "--config", str(config), *window(city), "-o", str(out),
                 "--dtypes", str(tmp_path / "." / "ledger.csv")]) == 2
    assert "--dtypes: " in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cloud.toml"]


def test_a_time_copied_from_the_csv_keeps_its_nanoseconds(db_ready: StackInfo, reader: InfluxHTTP,
                                                          city: City, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """The CSV's times have nine digits (a raw reading's `seq mod 1000` ns): given back as
    --start or --end they split the rows exactly there, as a frame's own index values do."""
    config = write_config(db_ready, tmp_path)
    command = ["readings", "air.pm", "--config", str(config), "--site", city.site]
    whole = CityData(reader, db_ready.database).readings("air.pm", *span(city), site=city.site)
    assert main([*command, *window(city)]) == 0
    times = [row.split(",", 1)[0] for row in capsys.readouterr().out.splitlines()[1:]]
    # the first two rows: pm-1 at +10 s (seq 0) and pm-2 one stamp later, seq 10 ns
    assert times[1].endswith("0.000000010Z")
    split = pd.Timestamp(times[1])
    assert main([*command, "--start", city.base.isoformat(), "--end", times[1]]) == 0
    before = [row.split(",", 1)[0] for row in capsys.readouterr().out.splitlines()[1:]]
    assert main([*command, "--start", times[1], "--end", window(city)[3]]) == 0
    after = [row.split(",", 1)[0] for row in capsys.readouterr().out.splitlines()[1:]]
    assert before == times[:1]
    assert after == times[1:]
    assert len(whole) == len(times)
    assert whole.index[1] == split


def test_times_pandas_cannot_hold_keep_what_datetime_reads() -> None:
    from cloud.query.cli import _time
    assert _time("2026-03-01T07:00:00.123456789+07:00") == pd.Timestamp("2026-03-01T00:00:00.123456789Z")
    week = _time("2026-W09-1T00:00:00+07:00")  # an ISO week date, which pandas does not read
    assert week == datetime.fromisoformat("2026-02-23T00:00:00+07:00")
    assert _time("0001-01-01T00:00:00Z").year == 1  # refused by the query, naming the bound
