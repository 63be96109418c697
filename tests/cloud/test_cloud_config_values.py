"""Values of the processor's config that were once taken when they should not have been."""

from __future__ import annotations

from typing import Any

import pytest

from cloud.config import parse_cloud_config
from urbanpulse.errors import ConfigError


def _config(**tables: dict[str, Any]) -> Any:
    base: dict[str, dict[str, Any]] = {"mqtt": {"password_file": "p", "tls": False},
                                       "influx": {"password_file": "p"}}
    for name, values in tables.items():
        base[name] = {**base.get(name, {}), **values}
    return parse_cloud_config(base)


def test_the_influx_timeout_is_a_finite_number_of_seconds() -> None:
    assert _config().influx.timeout_s == 30.0
    assert _config(influx={"timeout_s": 2}).influx.timeout_s == 2.0
    # nan and inf are floats to TOML; an HTTP client given one fails at its first request
    for bad in (0.1, "5", float("nan"), float("inf")):
        with pytest.raises(ConfigError, match=r"influx\.timeout_s"):
            _config(influx={"timeout_s": bad})


def test_a_nan_is_refused_where_a_least_value_is_checked() -> None:
    for key in ("epoch_interval_s", "backup_interval_s"):
        with pytest.raises(ConfigError, match=rf"flow\.{key}"):
            _config(flow={key: float("nan")})


def test_plain_mqtt_is_for_a_broker_on_this_machine_only() -> None:
    """Without TLS the cloud's password crosses the network in clear: refused by name."""
    plain = {"password_file": "p", "tls": False}
    influx = {"password_file": "p"}
    assert parse_cloud_config({"mqtt": {**plain, "host": "localhost"}, "influx": influx}).mqtt.tls is False
    with pytest.raises(ConfigError, match=r"^mqtt\.tls: false is for a broker on this machine only"):
        parse_cloud_config({"mqtt": {**plain, "host": "10.10.0.4"}, "influx": influx})


def test_backups_of_the_recovery_store_reach_no_further_back_than_the_journal() -> None:
    """Bytewax keeps a snapshot `backup_interval_s` after a newer one, so that a copy of
    the store can resume; the journal deletes what the dataflow consumed after
    `journal_retention_s`: a copy older than that would resume at deleted records."""
    same = _config(flow={"backup_interval_s": 3600, "journal_retention_s": 3600})
    assert same.flow.backup_interval_s == 3600
    with pytest.raises(ConfigError, match=r"flow\.journal_retention_s.*86400 is shorter than "
                                          r"flow\.backup_interval_s \(172800\)"):
        _config(flow={"backup_interval_s": 172800})


def test_a_zero_retention_is_refused_by_the_config_check() -> None:
    """InfluxDB takes DURATION 0d for INF: init-db refused it; `check-config` now does too."""
    for key in ("raw", "agg_1m", "agg_1h"):
        with pytest.raises(ConfigError, match=rf"retention\.{key}: '00h' is zero, which InfluxDB takes"):
            _config(retention={key: "00h"})
    assert _config(retention={"raw": "10d"}).retention.raw == "10d"


def test_the_raw_policy_keeps_what_a_rebuild_of_late_data_reads() -> None:
    """Late data older than flow.aggregate_horizon_s is folded in by rebuilding its windows
    and domain rollups from the raw points, reading back to 13 h before the late reading's
    hour (the queues' and the air NowCast's lookback). A raw policy shorter than the horizon
    plus that had InfluxDB delete what those rebuilds read: they found nothing, or part of
    it (beds unknown, a NowCast of fewer hours), and overwrote the right aggregates with the
    partial ones. Refused at start, naming both keys."""
    with pytest.raises(ConfigError, match=r"^retention\.raw: '12h' keeps less than "
                                          r"flow\.aggregate_horizon_s \(21600 s\) plus 13 h"):
        _config(retention={"raw": "12h"})
    with pytest.raises(ConfigError, match=r"^retention\.raw: '2d' keeps less than "
                                          r"flow\.aggregate_horizon_s \(172800 s\) plus 13 h"):
        _config(retention={"raw": "2d"}, flow={"aggregate_horizon_s": 2 * 86400})
    assert _config(retention={"raw": "19h"}).retention.raw == "19h"  # 6 h + 13 h
    assert _config(retention={"raw": "1w"}, flow={"aggregate_horizon_s": 2 * 86400}).retention.raw == "1w"
    assert _config(retention={"raw": "INF"}, flow={"aggregate_horizon_s": 10**9}).retention.raw == "INF"


def test_the_rebuild_reach_is_what_the_replays_read() -> None:
    from cloud.config import REBUILD_REACH_S
    from cloud.logic.domain_replay import LOOKBACK_NS
    from cloud.logic.rollup import HOUR_NS

    assert HOUR_NS + max(LOOKBACK_NS.values()) == REBUILD_REACH_S * 1_000_000_000


def test_a_process_id_without_a_cluster_is_refused() -> None:
    """Without flow.addresses the processor is process 0. `flow.process_id = 1` was taken,
    and `cloud run` then started no ingest (the journals are dealt out by process id) and
    read journal i0: missing, a misleading "does not exist ... must share state.dir" at each
    start; left by an earlier run, a processor that ran and journaled nothing, the data
    held in the broker and the nodes for ever."""
    assert _config(flow={"process_id": 0}).flow.process_id == 0
    for bad in (1, -1):
        with pytest.raises(ConfigError, match=rf"^flow\.process_id: must be 0 \(or left out\) without "
                                              rf"flow\.addresses, got {bad}"):
            _config(flow={"process_id": bad})


def test_an_address_listed_twice_is_refused() -> None:
    """Two processes on one host:port: Bytewax's process 1 failed to bind ("Address already
    in use") and process 0 ended with "Send thread panic", as if a peer had died."""
    with pytest.raises(ConfigError, match=r"^flow\.addresses: 127\.0\.0\.1:2101 is listed twice"):
        _config(flow={"addresses": ["127.0.0.1:2101", "127.0.0.1:2102", "127.0.0.1:2101"], "process_id": 0})
