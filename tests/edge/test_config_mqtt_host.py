"""`mqtt.host` is a host name or an IP address: a URL (`mqtts://broker:8883`), a
`host:port`, a bracketed IPv6 address, blanks or nothing are refused by `check-config`
naming the key. Before, the agent took them and tried the name at every reconnect for
ever: the node delivered nothing, its readings piling up in the outbox, and the only
word was a name-resolution error in `edge status`."""

from __future__ import annotations

from typing import Any

import pytest

from edge.config import parse_config
from urbanpulse.errors import ConfigError


def _config(host: Any, **mqtt: Any) -> Any:
    return parse_config({"node": {"id": "n1", "site": "s1"},
                         "mqtt": {"password_file": "/p", "ca_file": "/ca", "host": host, **mqtt},
                         "sensors": [{"id": "pm-1", "driver": "bed_pad", "pin": 17}]})


@pytest.mark.parametrize(("host", "reason"), [
    ("mqtts://mqtt.example.org:8883", r"a host name or an IP address, not a URL"),
    ("mqtt.example.org:8883", r"the port goes in mqtt\.port"),
    ("[::1]", r"an IPv6 address without brackets"),
    ("", r"must be a host name or an IP address, got ''"),
    (" mqtt.example.org", r"must be a host name or an IP address, got ' mqtt.example.org'"),
    ("mqtt example.org", r"must be a host name or an IP address"),
])
def test_a_host_that_is_no_host_name_or_address_is_refused(host: str, reason: str) -> None:
    with pytest.raises(ConfigError, match=rf"^mqtt\.host: .*{reason}"):
        _config(host)


@pytest.mark.parametrize("host", ["mqtt.example.org", "mqtt.example.org.", "broker",
                                  "10.0.0.5", "2001:db8::1", "::1", "localhost", "mqtt_1.lan"])
def test_host_names_and_addresses_pass(host: str) -> None:
    assert _config(host).mqtt.host == host
