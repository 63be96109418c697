"""The gateway's config: the sample passes, each mistake is refused naming its key, and
`urbanpulse gateway check-config` says so with the config error exit code."""

from __future__ import annotations

import tomllib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from edge.gateway.config import parse_config
from edge.gateway.relayer import Relayer, Taken
from urbanpulse.cli import main
from urbanpulse.clock import FakeClock
from urbanpulse.errors import ConfigError
from urbanpulse.wire.kinds import COUNT_UNITS, KINDS
from urbanpulse.wire.payload import MAX_PAYLOAD_BYTES, Reading, WireError, encode_batch
from urbanpulse.wire.relay import MAX_RELAY_BYTES, RelayedMessage

SAMPLE = Path(__file__).parents[3] / "edge" / "gateway" / "sample.toml"


def sample() -> dict[str, Any]:
    return tomllib.loads(SAMPLE.read_text(encoding="utf-8"))


def test_the_sample_config_is_valid_and_fills_the_defaults() -> None:
    config = parse_config(sample())
    assert (config.site, config.id) == ("hn-bachmai", "gw-1")
    assert config.limits.max_bytes == MAX_RELAY_BYTES
    assert config.limits.max_delay_s == 1.0
    assert config.cloud_mqtt.username == "hn-bachmai.gw-1"  # a node of the cloud broker
    assert config.site_mqtt.tls
    assert config.cloud_mqtt.tls


@pytest.mark.parametrize(("table", "key", "value", "named", "why"), [
    ("gateway", "site", "Bach Mai", "gateway.site", "not a valid id"),
    ("gateway", "id", "", "gateway.id", "not a valid id"),
    ("gateway", "relay_max_delay_s", float("nan"), "gateway.relay_max_delay_s", "finite"),
    ("gateway", "relay_max_delay_s", 0, "gateway.relay_max_delay_s", "> 0"),
    ("gateway", "relay_max_delay_s", 300, "gateway.relay_max_delay_s", "ack_timeout_s"),
    ("gateway", "relay_max_bytes", MAX_RELAY_BYTES + 1, "gateway.relay_max_bytes", "relay limit"),
    ("gateway", "relay_max_messages", 1001, "gateway.relay_max_messages", "1-1000"),
    ("gateway", "max_inflight_relays", 0, "gateway.max_inflight_relays", "1-1000"),
    ("gateway", "max_waiting_bytes", 1000, "gateway.max_waiting_bytes", "relay_max_bytes"),
    ("gateway", "heartbeat_s", 600, "gateway.heartbeat_s", "Node offline"),
    ("gateway", "relay_every_s", 1, "gateway.relay_every_s", "unknown key"),
    ("site_mqtt", "host", "mqtts://broker.lan", "site_mqtt.host", "host name"),
    ("cloud_mqtt", "host", "broker.lan:8883", "cloud_mqtt.host", "the port goes in cloud_mqtt.port"),
    ("cloud_mqtt", "port", 70000, "cloud_mqtt.port", "TCP port"),
    ("cloud_mqtt", "tls", False, "cloud_mqtt.tls", "in clear"),
    ("site_mqtt", "password_file", "relative/path", "site_mqtt.password_file", "path"),
    ("site_mqtt", "keepalive_s", 70000, "site_mqtt.keepalive_s", "16 bits"),
])
def test_a_wrong_value_is_refused_naming_its_key(table: str, key: str, value: Any, named: str,
                                                 why: str) -> None:
    raw = sample()
    raw[table][key] = value
    with pytest.raises(ConfigError) as caught:
        parse_config(raw)
    assert caught.value.key == named, caught.value
    assert why in caught.value.reason, caught.value


def test_missing_tables_and_credentials_are_named() -> None:
    raw = sample()
    del raw["cloud_mqtt"]
    with pytest.raises(ConfigError, match=r"^cloud_mqtt: missing table"):
        parse_config(raw)
    raw = sample()
    del raw["site_mqtt"]["password_file"]
    with pytest.raises(ConfigError, match=r"^site_mqtt\.password_file: give password_file"):
        parse_config(raw)
    raw = sample()
    del raw["site_mqtt"]["ca_file"]
    with pytest.raises(ConfigError, match=r"^site_mqtt\.ca_file: missing: TLS is on"):
        parse_config(raw)


def test_one_broker_for_both_links_is_refused() -> None:
    raw = sample()
    raw["cloud_mqtt"]["host"] = raw["site_mqtt"]["host"]
    with pytest.raises(ConfigError, match=r"^cloud_mqtt\.port: .* the site broker's too"):
        parse_config(raw)


def test_check_config_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["gateway", "check-config", "--config", str(SAMPLE)]) == 0
    assert "ok (gateway hn-bachmai/gw-1" in capsys.readouterr().out
    bad = tmp_path / "gateway.toml"
    bad.write_text(SAMPLE.read_text().replace("relay_max_delay_s = 1.0", "relay_max_delay_s = -1"))
    assert main(["gateway", "check-config", "--config", str(bad)]) == 2
    assert "config error: gateway.relay_max_delay_s: must be > 0" in capsys.readouterr().err
    assert main(["gateway", "run", "--config", str(tmp_path / "missing.toml")]) == 2
    assert "cannot read the config file" in capsys.readouterr().err


def _largest_batch() -> bytes:
    """The largest data message a node's publisher sends: as many readings as its encoder
    takes under the contract's payload limit (edge/publisher.py halves a batch only when
    the encoder refuses it), of the kind with the longest readings."""
    t0 = 1_796_000_000_123_456_789
    spec = KINDS["hospital.door"]
    # (a count is whole: encode_batch refuses 12.5 persons, as the cloud does)
    values = {name: 100_000 if f.unit in COUNT_UNITS else 12.5
              for name, f in spec.fields.items() if f.required}

    def batch(n: int) -> bytes:
        readings = [Reading("door-main-entrance", "hospital.door", t0 + i * 10**9, 10**12 + i, values)
                    for i in range(n)]
        return encode_batch("hn-bachmai", "ward-a", readings, batch="5e1d0c7a.311",
                            numbering="0123456789abcdef")

    low, high = 1, 2000  # outbox.batch_max_readings <= 2000
    while low < high:  # the largest count that encodes
        mid = (low + high + 1) // 2
        try:
            batch(mid)
            low = mid
        except WireError:
            high = mid - 1
    return batch(low)


def test_the_smallest_relay_the_config_takes_carries_a_nodes_largest_batch() -> None:
    """A node message no relay can carry is dropped at the gateway each time its node sends
    it again: it never reaches the cloud. So the config takes no relay_max_bytes that a
    node's full batch cannot fit in."""
    def accepted(max_bytes: int) -> bool:
        raw = sample()
        raw["gateway"]["relay_max_bytes"] = max_bytes
        try:
            parse_config(raw)
        except ConfigError:
            return False
        return True

    low, high = 1, MAX_RELAY_BYTES  # the smallest relay_max_bytes taken
    while low < high:
        mid = (low + high) // 2
        low, high = (low, mid) if accepted(mid) else (mid + 1, high)
    raw = sample()
    raw["gateway"]["relay_max_bytes"] = low
    config = parse_config(raw)
    payload = _largest_batch()
    assert len(payload) > MAX_PAYLOAD_BYTES - 1000  # (what the test means by largest)
    relayer = Relayer(config.site, config.id, config.limits,
                      FakeClock(datetime(2026, 11, 30, 6, 0, tzinfo=UTC)))
    assert relayer.offer(RelayedMessage("ward-a", "data", payload)) is Taken.TAKEN
    (relay,) = relayer.cut(flush=True)
    assert len(relay.payload) <= low
