"""`urbanpulse cloud init-db` and a retention of zero: InfluxDB takes DURATION 0d for INF,
so `retention.raw = "0d"` (meant as "keep nothing", or a slip) made the raw policy keep
every reading for ever without a word, and InfluxDB's disk grew without bound (checked on
the session's 1.6.7: SHOW RETENTION POLICIES says 0s, as for INF). init-db now refuses it,
naming the key, before it changes anything (found by review). Real InfluxDB, through the
command an operator runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from cloud.cli import EXIT_CONFIG, main
from cloud.config import Retention
from cloud.initdb import init_db
from cloud.stack_config import cloud_config_for_stack, to_toml
from urbanpulse.influx_http import InfluxHTTP
from urbanpulse.stack import StackInfo


@pytest.mark.parametrize("key", ["raw", "agg_1m", "agg_1h"])
def test_a_zero_retention_is_refused_naming_the_key_and_nothing_is_made(
        db_ready: StackInfo, admin: InfluxHTTP, tmp_path: Path, key: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    database = f"zz_zero_{key}"
    config = cloud_config_for_stack(db_ready, tmp_path / "state")
    config["influx"]["database"] = database
    config["retention"] = {key: "0d"}
    path = tmp_path / "cloud.toml"
    path.write_text(to_toml(config))
    password = tmp_path / "admin.password"
    password.write_text(db_ready.influx("admin").password())
    assert main(["init-db", "--config", str(path), "--admin-password-file", str(password)]) == EXIT_CONFIG
    err = capsys.readouterr().err
    assert f"config error: retention.{key}: '0d' is zero, which InfluxDB takes for INF" in err, err
    assert database not in {row["name"] for row in admin.query_points("SHOW DATABASES")}


def test_the_policies_as_configured_otherwise(admin: InfluxHTTP) -> None:
    database = "zz_retention_ok"
    try:
        init_db(admin, database, Retention(raw="2w", agg_1m="400d", agg_1h="INF"))
        policies = {row["name"]: row["duration"] for row in
                    admin.query_points(f'SHOW RETENTION POLICIES ON "{database}"')}
        assert {k: policies[k] for k in ("raw", "agg_1m", "agg_1h")} == {
            "raw": "336h0m0s", "agg_1m": "9600h0m0s", "agg_1h": "0s"}
    finally:
        admin.query(f'DROP DATABASE "{database}"', post=True)
