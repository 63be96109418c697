"""The generated files: committed == generated, structure Grafana relies on, no secrets.

Grafana cannot be installed here, so these check the JSON/YAML the way Grafana reads it
(uids, datasource references, template variables); the queries themselves are proven
against the real InfluxDB in test_dashboards_influx.py.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from urbanpulse.dashboards import DATASOURCE_UID
from urbanpulse.dashboards.city import all_dashboards
from urbanpulse.dashboards.cli import main
from urbanpulse.dashboards.errors import DashboardsError, QueryTemplateError
from urbanpulse.dashboards.generate import generated_files, stale, write
from urbanpulse.dashboards.model import render
from urbanpulse.dashboards.queries import TimeRange, interpolate, regex_value

COMMITTED = Path(__file__).resolve().parents[2] / "dashboards"
NOW = datetime(2026, 11, 28, 9, 30, tzinfo=UTC)


def test_committed_files_equal_what_the_code_generates() -> None:
    assert stale(COMMITTED) == [], "run `urbanpulse dashboards generate` and commit the result"


def test_generate_writes_files_that_check_accepts_and_detects_a_hand_edit(tmp_path: Path) -> None:
    assert main(["generate", "--out", str(tmp_path)]) == 0
    assert main(["generate", "--out", str(tmp_path), "--check"]) == 0
    edited = tmp_path / "json" / "urbanpulse-traffic.json"
    edited.write_text(edited.read_text(encoding="utf-8").replace("Speed", "Velocity"), encoding="utf-8")
    assert stale(tmp_path) == ["json/urbanpulse-traffic.json"]
    assert main(["generate", "--out", str(tmp_path), "--check"]) == 1


def test_the_five_dashboards_with_unique_uids_and_titles() -> None:
    dashboards = [render(d) for d in all_dashboards()]
    assert [d["title"] for d in dashboards] == [
        "City operations — hospitals", "City operations — traffic",
        "City operations — air quality", "Data health", "Sensor faults and anomalies"]
    assert len({d["uid"] for d in dashboards}) == 5
    for d in dashboards:
        assert d["schemaVersion"] == 39
        assert "id" not in d


def test_dashboards_show_the_citys_time_whatever_the_screens_clock_says() -> None:
    """A wall screen in Hanoi's operations room whose OS runs on UTC showed every time 7 h
    off with Grafana's "browser" zone (found by review): the dashboards show Hanoi time,
    a zone Grafana takes by its IANA name."""
    for d in all_dashboards():
        rendered = render(d)
        assert rendered["timezone"] == "Asia/Ho_Chi_Minh", rendered["title"]
        ZoneInfo(rendered["timezone"])  # a real IANA zone


def test_every_panel_and_variable_uses_the_influx_datasource_and_fits_the_grid() -> None:
    for dashboard in map(render, all_dashboards()):
        ids = [p["id"] for p in dashboard["panels"]]
        assert len(ids) == len(set(ids))
        occupied: set[tuple[int, int]] = set()
        for panel in dashboard["panels"]:
            assert panel["datasource"]["uid"] == DATASOURCE_UID
            assert panel["targets"], panel["title"]
            pos = panel["gridPos"]
            assert pos["x"] + pos["w"] <= 24
            cells = {(pos["x"] + i, pos["y"] + j) for i in range(pos["w"]) for j in range(pos["h"])}
            assert not cells & occupied, f"{panel['title']} overlaps another panel"
            occupied |= cells
            for target in panel["targets"]:
                assert target["datasource"]["uid"] == DATASOURCE_UID
                assert target["rawQuery"] is True
        names = [v["name"] for v in dashboard["templating"]["list"]]
        assert names == ["site", "node"]
        for var in dashboard["templating"]["list"]:
            assert var["query"].startswith("SHOW TAG VALUES FROM")
            assert var["datasource"]["uid"] == DATASOURCE_UID


# Per-hospital rollups have no node tag: a node filter would empty them.
SITE_LEVEL = ("hospital_occupancy", "hospital_flow", "hospital_wait")
# The processor's report on itself has neither a site nor a node.
CITY_LEVEL = ("processor",)


def test_panel_queries_filter_by_the_template_variables_they_declare() -> None:
    for dashboard in all_dashboards():
        declared = {v.name for v in dashboard.variables}
        for panel in dashboard.panels:
            for query in panel.queries:
                used = set(re.findall(r"\$(\w+)", query.influxql)) - {"timeFilter", "__interval"}
                site_level = any(f'."{m}"' in query.influxql for m in SITE_LEVEL)
                city_level = any(f'."{m}"' in query.influxql for m in CITY_LEVEL)
                expected = set() if city_level else declared - {"node"} if site_level else declared
                assert used == expected, f"{dashboard.uid} / {panel.title}: uses {used}"


def test_datasource_password_is_an_environment_reference_never_a_literal() -> None:
    text = generated_files()["provisioning/datasources/urbanpulse.yaml"]
    passwords = [line.strip() for line in text.splitlines() if "password" in line]
    assert passwords == ['password: "${URBANPULSE_INFLUX_READER_PASSWORD}"']
    assert f'uid: "{DATASOURCE_UID}"' in text


def test_alert_file_escapes_every_dollar_so_grafana_does_not_expand_it_from_the_environment() -> None:
    text = generated_files()["provisioning/alerting/urbanpulse.yaml"]
    assert "$$timeFilter" in text
    assert "{{ $$labels.node }}" in text
    assert re.search(r"(?<!\$)\$(?!\$)", text) is None
    for uid in ("node-offline", "outbox-growing", "dead-letters", "missing-data", "node-clock-off",
                "pm25-high", "processor-silent", "processor-behind", "processor-read-refused",
                "state-disk-low", "sensor-link-errors"):
        assert f'uid: "urbanpulse-{uid}"' in text


def test_interpolate_replaces_builtins_and_variables() -> None:
    time_range = TimeRange.last(NOW, timedelta(hours=6))
    text = interpolate('SELECT x FROM m WHERE $timeFilter AND "site" =~ /^$site$/ '
                       "GROUP BY time($__interval)", time_range, {"site": regex_value("hn-a.b/c")})
    start_ms = int((NOW - timedelta(hours=6)).timestamp() * 1000)
    assert f"time >= {start_ms}ms and time <= {start_ms + 6 * 3600 * 1000}ms" in text
    assert "time(30s)" in text  # 6 h / 1000 points = 21.6 s, rounded up to Grafana's 30 s step
    assert r"/^hn\-a\.b\/c$/" in text


def test_interpolate_refuses_an_unknown_variable() -> None:
    with pytest.raises(QueryTemplateError, match=r"\$node"):
        interpolate('SELECT x FROM m WHERE "node" =~ /^$node$/', TimeRange.last(NOW, timedelta(hours=1)),
                    {"site": ".*"})


def test_time_range_needs_aware_ordered_datetimes() -> None:
    with pytest.raises(ValueError, match="aware"):
        TimeRange(datetime(2026, 1, 1), datetime(2026, 1, 2))
    with pytest.raises(ValueError, match="not after"):
        TimeRange(NOW, NOW)


def test_write_into_an_unwritable_place_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x", encoding="utf-8")
    with pytest.raises(DashboardsError, match="cannot write the dashboards into"):
        write(blocker)
    assert main(["generate", "--out", str(blocker)]) == 2


def test_every_alert_says_what_to_check_and_names_a_runbook_section_that_exists() -> None:
    from urbanpulse.dashboards.alerts import RULES

    runbook = (COMMITTED.parent / "docs" / "runbook.md").read_text(encoding="utf-8")
    sections = set(re.findall(r"^## (.+)$", runbook, flags=re.MULTILINE))
    for rule in RULES:
        named = re.findall(r'Runbook: docs/runbook\.md, "([^"]+)"|docs/runbook\.md, "([^"]+)"', rule.action)
        assert named, rule.title
        assert {a or b for a, b in named} <= sections, rule.title
        assert rule.title in sections, f"{rule.title}: no runbook section of its own"
