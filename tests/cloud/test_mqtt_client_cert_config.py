"""[mqtt] cert_file and key_file: the processor's client certificate, for a broker whose
cloud listener requires one (the mosquitto role's urbanpulse_mqtt_cloud_auth 'certificate').
Validated without I/O; a file that cannot be used stops the start-up, naming it (a good
pair connecting: tests/ansible/test_ansible_mosquitto_cert_listener.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cloud.config import CloudMqtt, parse_cloud_config
from cloud.errors import CloudError
from cloud.ingest import make_ingest_client
from tests.ansible.mqtt_certs import Ca
from urbanpulse.errors import ConfigError


def _mqtt(**values: Any) -> CloudMqtt:
    mqtt = {"password_file": "/nonexistent/cloud-mqtt.password", "ca_file": "/nonexistent/ca.pem",
            "host": "mqtt.example.org", **values}
    return parse_cloud_config({"mqtt": mqtt, "influx": {"password_file": "p"}}).mqtt


def test_no_client_certificate_by_default() -> None:
    mqtt = _mqtt()
    assert (mqtt.cert_file, mqtt.key_file) == (None, None)


def test_both_files_are_taken_without_being_read() -> None:
    mqtt = _mqtt(cert_file="/nonexistent/cloud-mqtt.pem", key_file="/nonexistent/cloud-mqtt.key")
    assert mqtt.cert_file == Path("/nonexistent/cloud-mqtt.pem")
    assert mqtt.key_file == Path("/nonexistent/cloud-mqtt.key")


@pytest.mark.parametrize(("values", "key", "reason"), [
    ({"cert_file": "/c.pem"}, "mqtt.key_file", "missing: mqtt.cert_file is given"),
    ({"key_file": "/c.key"}, "mqtt.cert_file", "missing: mqtt.key_file is given"),
    ({"cert_file": " ", "key_file": "/c.key"}, "mqtt.cert_file", "is empty"),
    ({"cert_file": "/c.pem", "key_file": ""}, "mqtt.key_file", "is empty"),
    ({"cert_file": "/c.pem", "key_file": "/c.key", "tls": False, "host": "127.0.0.1"},
     "mqtt.cert_file", "is for TLS, but mqtt.tls is false"),
    ({"cert_file": 1, "key_file": "/c.key"}, "mqtt.cert_file", "must be str"),
])
def test_a_half_or_empty_client_certificate_is_refused_by_name(
        values: dict[str, Any], key: str, reason: str) -> None:
    with pytest.raises(ConfigError) as caught:
        _mqtt(**values)
    assert caught.value.key == key
    assert reason in str(caught.value)


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    site, cloud = Ca.new("site CA"), Ca.new("cloud clients CA")
    cert, key = cloud.issue(tmp_path, "cloud-mqtt", "cloud")
    other_cert, other_key = cloud.issue(tmp_path, "other", "cloud")
    password = tmp_path / "cloud-mqtt.password"
    password.write_text("cloud-secret-0123456789\n")
    return {"ca_file": site.write(tmp_path / "ca.pem"), "cert_file": cert, "key_file": key,
            "other_key": other_key, "other_cert": other_cert, "password_file": password}


def _cfg(files: dict[str, Path], **paths: Path) -> CloudMqtt:
    chosen = {k: files[k] for k in ("ca_file", "cert_file", "key_file", "password_file")}
    chosen.update(paths)
    return _mqtt(**{k: str(v) for k, v in chosen.items()})


@pytest.mark.parametrize(("paths", "named"), [
    ({"cert_file": "missing.pem"}, "missing.pem"),
    ({"key_file": "missing.key"}, "missing.key"),
    ({"key_file": "other_key"}, "other.key"),  # the key of another certificate
    ({"cert_file": "password_file"}, "cloud-mqtt.password"),  # not PEM
])
def test_a_file_that_cannot_be_used_stops_the_start_up_naming_it(
        files: dict[str, Path], tmp_path: Path, paths: dict[str, str], named: str) -> None:
    chosen = {k: files.get(v, tmp_path / v) for k, v in paths.items()}
    with pytest.raises(CloudError, match=r"mqtt\.cert_file / mqtt\.key_file: client certificate") as caught:
        make_ingest_client(_cfg(files, **chosen), "urbanpulse-ingest-i0")
    assert named in str(caught.value)


def test_a_certificate_for_another_user_stops_the_start_up(files: dict[str, Path], tmp_path: Path
                                                           ) -> None:
    """The broker takes the certificate's name as the user: under another name than
    mqtt.username the ingest would connect and subscribe, and be given nothing."""
    cert, key = Ca.new("cloud clients CA").issue(tmp_path, "processor", "processor")
    with pytest.raises(CloudError, match=r"its common name is processor, not mqtt\.username 'cloud'"):
        make_ingest_client(_cfg(files, cert_file=cert, key_file=key), "urbanpulse-ingest-i0")
    agreeing = _mqtt(ca_file=str(files["ca_file"]), password_file=str(files["password_file"]),
                     cert_file=str(cert), key_file=str(key), username="processor")
    make_ingest_client(agreeing, "urbanpulse-ingest-i0")  # the same names: taken
