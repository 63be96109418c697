"""MQTT without TLS carries the node's password in clear: the config allows it only for a
broker on the node itself (a lab bench), and names the key when it refuses."""

from __future__ import annotations

from typing import Any

import pytest

from edge.config import parse_config
from urbanpulse.errors import ConfigError


def _config(**mqtt: Any) -> Any:
    return parse_config({"node": {"id": "n1", "site": "s1"},
                         "mqtt": {"password_file": "/p", **mqtt},
                         "sensors": [{"id": "pm-1", "driver": "sds011", "port": "/dev/null"}]})


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "localhost"])
def test_plain_mqtt_to_this_machine_is_allowed(host: str) -> None:
    assert _config(host=host, tls=False).mqtt.tls is False


@pytest.mark.parametrize("host", ["10.10.0.5", "broker.hanoi.example", "127.0.0.2"])
def test_plain_mqtt_across_the_network_is_refused_naming_the_key(host: str) -> None:
    with pytest.raises(ConfigError, match=r"^mqtt\.tls: false is for a broker on this machine only") as err:
        _config(host=host, tls=False)
    assert host in err.value.reason
    assert _config(host=host, ca_file="/etc/urbanpulse/ca.pem").mqtt.tls is True
