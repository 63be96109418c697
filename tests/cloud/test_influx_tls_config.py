"""The InfluxDB link's TLS settings without a server: the config refuses plain http:// to
another host and a CA file that cannot apply, naming the key; the client refuses a CA file
it cannot read before any request."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cloud.config import parse_cloud_config
from urbanpulse.config_fields import http_only_on_loopback
from urbanpulse.errors import ConfigError
from urbanpulse.influx_http import InfluxCAFileError, InfluxHTTP


def _influx(**influx: Any) -> Any:
    raw = {"mqtt": {"password_file": "p", "tls": False}, "influx": {"password_file": "p", **influx}}
    return parse_cloud_config(raw).influx


@pytest.mark.parametrize("url", ["http://127.0.0.1:8086", "http://localhost:8086",
                                 "http://LOCALHOST:8086", "http://[::1]:8086"])
def test_plain_http_to_this_machine_stays_allowed(url: str) -> None:
    cfg = _influx(url=url)
    assert (cfg.url, cfg.ca_file) == (url, None)


@pytest.mark.parametrize("url", ["http://10.10.0.6:8086", "http://influx.example.org:8086",
                                 "http://127.0.0.2:8086", "http://:8086"])
def test_plain_http_to_another_host_is_refused_naming_the_url(url: str) -> None:
    with pytest.raises(ConfigError, match=r"^influx\.url: .*use https://"):
        _influx(url=url)


def test_https_to_another_host_takes_a_ca_file_or_the_systems_cas() -> None:
    assert _influx(url="https://influx.example.org:8086").ca_file is None
    cfg = _influx(url="https://influx.example.org:8086", ca_file="/etc/urbanpulse/ca.pem")
    assert cfg.ca_file == Path("/etc/urbanpulse/ca.pem")


def test_the_v2_api_takes_the_ca_file_and_keeps_the_http_rule() -> None:
    cfg = _influx(url="https://influx.example.org:8086", ca_file="/etc/urbanpulse/ca.pem",
                  api="v2", token_file="/t")
    assert (cfg.api, cfg.ca_file) == ("v2", Path("/etc/urbanpulse/ca.pem"))
    with pytest.raises(ConfigError, match=r"^influx\.url: .*use https://"):
        _influx(url="http://influx.example.org:8086", api="v2", token_file="/t")
    with pytest.raises(ConfigError, match=r"^influx\.ca_file: is for an https:// url"):
        _influx(url="http://127.0.0.1:8086", ca_file="/ca.pem", api="v2", token_file="/t")


def test_the_ca_file_is_not_read_while_validating() -> None:
    assert _influx(url="https://h:8086", ca_file="/nonexistent/ca.pem").ca_file == Path(
        "/nonexistent/ca.pem")


@pytest.mark.parametrize(("influx", "reason"), [
    ({"url": "http://127.0.0.1:8086", "ca_file": "/ca.pem"}, "is for an https:// url"),
    ({"url": "https://h:8086", "ca_file": " "}, "is empty"),
    ({"url": "https://h:8086", "ca_file": 3}, "must be str"),
])
def test_a_ca_file_that_cannot_apply_is_refused_by_name(influx: dict[str, Any], reason: str) -> None:
    with pytest.raises(ConfigError, match=r"^influx\.ca_file") as caught:
        _influx(**influx)
    assert reason in str(caught.value)


def test_the_shared_rule_names_the_key_it_is_given() -> None:
    http_only_on_loopback("https://anywhere:1", "x.url")
    with pytest.raises(ConfigError, match=r"^x\.url: .*got host 'anywhere'"):
        http_only_on_loopback("http://anywhere:1", "x.url")


def test_a_ca_file_is_only_for_https() -> None:
    with pytest.raises(ValueError, match="ca_file is for an https:// url"):
        InfluxHTTP("http://127.0.0.1:8086", ca_file="/ca.pem")


def test_an_unreadable_ca_file_is_refused_before_any_request(tmp_path: Path) -> None:
    missing = tmp_path / "missing.pem"
    with pytest.raises(InfluxCAFileError, match="cannot be read") as caught:
        InfluxHTTP("https://127.0.0.1:1", ca_file=missing)
    assert str(caught.value).startswith(f"ca_file {missing}: ")
    assert not caught.value.retryable
    for name, text in (("empty.pem", ""), ("garbage.pem", "not a certificate\n")):
        (tmp_path / name).write_text(text)
        with pytest.raises(InfluxCAFileError, match="no PEM certificate"):
            InfluxHTTP("https://127.0.0.1:1", ca_file=tmp_path / name)
