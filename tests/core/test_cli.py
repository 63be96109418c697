"""The `urbanpulse` dispatcher and config errors as a technician sees them."""

from __future__ import annotations

from pathlib import Path

import pytest

from urbanpulse.cli import main

SAMPLES = sorted(Path(__file__).resolve().parents[2].glob("edge/drivers/*/sample.toml"))


def test_help_lists_groups(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    assert "edge" in capsys.readouterr().out


def test_unknown_group_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["teleport"]) == 2
    assert "unknown group 'teleport'" in capsys.readouterr().err


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda p: p.parent.name)
def test_every_driver_sample_config_is_valid(sample: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["edge", "check-config", str(sample)]) == 0, capsys.readouterr().err


def test_a_wrong_config_names_the_key_and_why(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = SAMPLES[0].read_text().replace("port = 8883", "port = 70000")
    bad = tmp_path / "node.toml"
    bad.write_text(text)
    assert main(["edge", "check-config", str(bad)]) == 2
    assert "mqtt.port: must be 1-65535, got 70000" in capsys.readouterr().err


def test_cloud_config_error_names_the_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "cloud.toml"
    bad.write_text('[mqtt]\npassword_file = "p"\nca_file = "c"\n[influx]\npassword_file = "p"\n'
                   '[retention]\nraw = "30 days"\n')
    assert main(["cloud", "check-config", str(bad)]) == 2
    assert "retention.raw: '30 days': use INF or a number with h, d or w" in capsys.readouterr().err


def test_a_sensor_id_outside_the_wire_contract_is_refused(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    sample = next(p for p in SAMPLES if p.parent.name == "sds011")
    bad = tmp_path / "node.toml"
    bad.write_text(sample.read_text().replace('id = "pm-1"', 'id = "PM 1"'))
    assert main(["edge", "check-config", str(bad)]) == 2
    assert "sensors[0].id: 'PM 1': use 1-64 of a-z" in capsys.readouterr().err


def test_times_on_the_command_line_need_their_zone() -> None:
    import argparse
    from datetime import UTC, datetime, timedelta, timezone

    from urbanpulse.cli_types import aware_datetime

    assert aware_datetime("2026-11-29T05:00:00Z") == datetime(2026, 11, 29, 5, tzinfo=UTC)
    assert aware_datetime("2026-11-29T12:00:00+07:00").tzinfo == timezone(timedelta(hours=7))
    for text, why in (("2026-11-29T05:00:00", "has no zone"), ("yesterday", "is not an ISO-8601")):
        with pytest.raises(argparse.ArgumentTypeError, match=why):
            aware_datetime(text)


GATEWAY_SAMPLE = Path(__file__).resolve().parents[2] / "edge" / "gateway" / "sample.toml"


@pytest.mark.parametrize(("group", "sample"), [("edge", SAMPLES[0]), ("gateway", GATEWAY_SAMPLE)])
def test_check_config_takes_the_file_alone_or_with_config_as_every_other_command(
        group: str, sample: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([group, "check-config", str(sample)]) == 0, capsys.readouterr().err
    assert main([group, "check-config", "--config", str(sample)]) == 0, capsys.readouterr().err
    assert main([group, "check-config", str(sample), "--config", str(sample)]) == 0
    capsys.readouterr()
    with pytest.raises(SystemExit) as usage:  # argparse's usage error
        main([group, "check-config"])
    assert usage.value.code == 2
    assert "the config file is required" in capsys.readouterr().err
    with pytest.raises(SystemExit) as usage:
        main([group, "check-config", str(sample), "--config", "other.toml"])
    assert usage.value.code == 2
    assert "two config files given" in capsys.readouterr().err


def test_cloud_check_config_takes_config_too(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "cloud.toml"
    bad.write_text('[mqtt]\npassword_file = "p"\nca_file = "c"\n[influx]\npassword_file = "p"\n'
                   '[retention]\nraw = "30 days"\n')
    assert main(["cloud", "check-config", "--config", str(bad)]) == 2  # read: its error is the file's
    assert "retention.raw: '30 days'" in capsys.readouterr().err


def test_a_misspelt_key_gets_the_nearest_known_one(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    sample = next(p for p in SAMPLES if p.parent.name == "sds011")
    for typo, key, near in (("state_dir", "statedir", "state_dir"),
                            ('port = "/dev', 'prot = "/dev', "port")):
        bad = tmp_path / "node.toml"
        bad.write_text(sample.read_text().replace(typo, key, 1))
        assert main(["edge", "check-config", str(bad)]) == 2
        assert f"unknown key{' for sds011' if near == 'port' else ''}; did you mean {near!r}?" \
            in capsys.readouterr().err
    bad.write_text(sample.read_text().replace("[node]", "[node]\nzzz_qqq = 1", 1))
    assert main(["edge", "check-config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "node.zzz_qqq: unknown key (known: " in err
    assert "did you mean" not in err


def test_the_gateways_log_level_is_checked_in_any_case(capsys: pytest.CaptureFixture[str]) -> None:
    from edge.gateway.cli import _parser

    args = _parser().parse_args(["run", "--config", str(GATEWAY_SAMPLE), "--log-level", "debug"])
    assert args.log_level == "DEBUG"
    with pytest.raises(SystemExit) as usage:
        main(["gateway", "run", "--config", str(GATEWAY_SAMPLE), "--log-level", "verbose"])
    assert usage.value.code == 2
    assert "invalid choice: 'VERBOSE'" in capsys.readouterr().err
