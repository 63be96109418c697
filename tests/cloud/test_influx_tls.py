"""InfluxDB over HTTPS, on a real influxd: the clients the processor and the analysts' API
make from the config trust the configured CA and check the server's name; another CA, the
system's CAs or a certificate for another name are refused at once with a clear error."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bench.influx.server import with_settings
from cloud.cli import main as cloud_main
from cloud.config import load_cloud_config
from cloud.errors import SinkError
from cloud.logic.records import RP_RAW
from cloud.query.city_data import CityData
from cloud.sink import make_writer
from urbanpulse.errors import ConfigError
from urbanpulse.influx_http import InfluxError, InfluxHTTP, InfluxTLSError
from urbanpulse.stack import influxd, process
from urbanpulse.stack.config import StackConfig
from urbanpulse.stack.layout import Layout
from urbanpulse.stack.tls import ensure_tls
from urbanpulse.testing import wait_for

READY_S = 30.0
REFUSED_WITHIN_S = 5.0  # a refused handshake is an answer, not a wait for the timeout


@dataclass
class HttpsInflux:
    url: str
    ca_file: Path
    home: Path
    passwords: dict[str, Path]


def _https_settings(cert: Path, key: Path) -> dict[str, dict[str, str]]:
    return {"http": {"https-enabled": "true", "https-certificate": f'"{cert}"',
                     "https-private-key": f'"{key}"'}}


def _start(home: Path, cert: Path, key: Path) -> tuple[StackConfig, Layout]:
    """influxd with the stack's config, HTTPS on (influxd.start waits on http://: not here)."""
    http_port, rpc_port, unused_mqtt = process.free_ports(3)
    config = StackConfig(home=home, mqtt_port=unused_mqtt, influx_port=http_port,
                         influx_rpc_port=rpc_port)
    layout = Layout(home)
    influxd.write_config(config, layout)
    layout.influx_conf.write_text(with_settings(layout.influx_conf.read_text(),
                                                _https_settings(cert, key)))
    process.start_detached([influxd.BINARY, "run", "-config", str(layout.influx_conf)],
                           output=layout.influx_log, pidfile=layout.influx_pid, env=influxd.ENVIRONMENT)
    return config, layout


def _wait_for_answer(client: InfluxHTTP, layout: Layout) -> None:
    """Until influxd accepts connections: a refused connection means "not yet"."""
    try:
        wait_for(client.ping, READY_S, "influxd to answer", every_s=0.05)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{process.tail(layout.influx_log)}") from exc


@pytest.fixture(scope="module")
def https_influx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpsInflux]:
    influxd.require_binary()
    home = tmp_path_factory.mktemp("influx-https")
    layout = Layout(home)
    ensure_tls(layout)  # the stack's CA and a server certificate for 127.0.0.1 / localhost
    config, layout = _start(home, layout.server_cert, layout.server_key)
    url = f"https://127.0.0.1:{config.influx_port}"
    try:
        anonymous = InfluxHTTP(url, ca_file=layout.ca_cert)
        _wait_for_answer(anonymous, layout)
        passwords = {}
        for role in ("admin", "writer", "reader"):
            passwords[role] = home / f"{role}.password"
            passwords[role].write_text(f"{role}-secret-0123456789\n")
        with anonymous:
            anonymous.query("CREATE USER admin WITH PASSWORD 'admin-secret-0123456789' "
                            "WITH ALL PRIVILEGES", post=True)
        https = HttpsInflux(url, layout.ca_cert, home, passwords)
        # the database and its retention policies by `cloud init-db`, over https + ca_file
        assert cloud_main(["init-db", "--config", str(_cloud_config(https, home / "init.toml")),
                           "--admin-password-file", str(passwords["admin"])]) == 0
        with InfluxHTTP(url, "admin", "admin-secret-0123456789", ca_file=layout.ca_cert) as admin:
            admin.query("CREATE USER writer WITH PASSWORD 'writer-secret-0123456789'; "
                        'GRANT WRITE ON "urbanpulse" TO writer; '
                        "CREATE USER reader WITH PASSWORD 'reader-secret-0123456789'; "
                        'GRANT READ ON "urbanpulse" TO reader', post=True)
        yield https
    finally:
        influxd.stop(layout)


def _cloud_config(https: HttpsInflux, path: Path, ca_file: Path | None = None) -> Path:
    path.write_text(f"""\
[mqtt]
tls = false
password_file = "{https.home / 'unused-mqtt.password'}"

[influx]
url = "{https.url}"
ca_file = "{ca_file or https.ca_file}"
password_file = "{https.passwords['writer']}"
reader_password_file = "{https.passwords['reader']}"
timeout_s = 10
""")
    return path


def _other_ca(tmp_path: Path) -> Path:
    other = Layout(tmp_path / "other")
    ensure_tls(other)
    return other.ca_cert


def _refused_fast(call: object) -> InfluxTLSError:
    started = time.monotonic()
    with pytest.raises(InfluxTLSError) as caught:
        call()  # type: ignore[operator]
    assert time.monotonic() - started < REFUSED_WITHIN_S
    return caught.value


def _recent_s() -> int:
    """A whole second within the raw retention policy (30 days)."""
    return int(time.time()) - 3600


def test_a_client_trusting_the_servers_ca_writes_and_reads(https_influx: HttpsInflux) -> None:
    at_ns = _recent_s() * 10**9
    with InfluxHTTP(https_influx.url, "writer", "writer-secret-0123456789",
                    ca_file=https_influx.ca_file) as writer:
        assert writer.ping()
        writer.write(f"tls_probe,node=n1 value=1i {at_ns}".encode(), db="urbanpulse")
    with InfluxHTTP(https_influx.url, "reader", "reader-secret-0123456789",
                    ca_file=str(https_influx.ca_file)) as reader:
        rows = reader.query_points('SELECT "value" FROM "tls_probe"', db="urbanpulse")
    assert rows == [{"time": at_ns, "value": 1}]


def test_another_ca_is_refused_at_the_handshake(https_influx: HttpsInflux, tmp_path: Path) -> None:
    client = InfluxHTTP(https_influx.url, "writer", "writer-secret-0123456789",
                        ca_file=_other_ca(tmp_path))
    with client:
        error = _refused_fast(lambda: client.write(b"tls_probe value=2i", db="urbanpulse"))
        assert "certificate verify failed" in str(error)
        assert str(_other_ca(tmp_path)) in str(error)
        assert error.retryable  # a writer keeps its points until the CA is fixed
        _refused_fast(client.ping)  # not "not ready yet": waiting would not help


def test_the_systems_cas_do_not_trust_a_private_ca(https_influx: HttpsInflux) -> None:
    with InfluxHTTP(https_influx.url, "reader", "reader-secret-0123456789") as client:
        error = _refused_fast(lambda: client.query("SHOW DATABASES"))
    assert "certificate verify failed" in str(error)
    assert "the system's CAs" in str(error)


def test_plain_http_to_the_https_port_is_refused(https_influx: HttpsInflux) -> None:
    plain = https_influx.url.replace("https://", "http://")
    with InfluxHTTP(plain, "reader", "reader-secret-0123456789", timeout_s=5) as client:
        started = time.monotonic()
        with pytest.raises(InfluxError) as caught:
            client.query("SHOW DATABASES")
        assert time.monotonic() - started < REFUSED_WITHIN_S
    assert caught.value.status == 400
    assert "HTTP request to an HTTPS server" in str(caught.value)


def test_the_configs_clients_use_its_ca_file(https_influx: HttpsInflux, tmp_path: Path) -> None:
    cfg = load_cloud_config(_cloud_config(https_influx, tmp_path / "cloud.toml"))
    assert cfg.influx.ca_file == https_influx.ca_file
    at_s = _recent_s()
    writer = make_writer(cfg.influx)
    assert isinstance(writer.client, InfluxHTTP)
    assert writer.reader is not None
    try:
        writer.write([(RP_RAW, f"tls_config,node=n2 value=7i {at_s * 10**9}")])
        assert writer.stats.points == 1
        assert writer.stats.retries == 0
        rows = writer.reader.query_points('SELECT "value" FROM "tls_config"', db="urbanpulse")
    finally:
        writer.client.close()
        writer.reader.close()
    assert [r["value"] for r in rows] == [7]
    with CityData.from_config(tmp_path / "cloud.toml") as data:
        start = datetime.fromtimestamp(at_s, UTC)
        frame = data.measurement("tls_config", start, start + timedelta(minutes=1))
    assert list(frame["value"]) == [7]


def test_a_config_whose_ca_is_not_the_servers_is_refused(https_influx: HttpsInflux, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    path = _cloud_config(https_influx, tmp_path / "cloud.toml", _other_ca(tmp_path))
    with CityData.from_config(path) as data:
        error = _refused_fast(lambda: data.client.query("SHOW MEASUREMENTS", db="urbanpulse"))
    assert "certificate verify failed" in str(error)
    code = cloud_main(["init-db", "--config", str(path),
                       "--admin-password-file", str(https_influx.passwords["admin"])])
    assert code == 3  # a runtime error, said on stderr; not a hang
    assert "certificate verify failed" in capsys.readouterr().err


def test_a_ca_file_that_is_missing_is_named_by_every_config_client(https_influx: HttpsInflux,
                                                                   tmp_path: Path) -> None:
    path = _cloud_config(https_influx, tmp_path / "cloud.toml", tmp_path / "missing-ca.pem")
    cfg = load_cloud_config(path)  # no I/O while validating: the file is read by the clients
    with pytest.raises(SinkError, match=r"influx\.ca_file.*missing-ca\.pem"):
        make_writer(cfg.influx)
    with pytest.raises(ConfigError, match=r"influx\.ca_file.*missing-ca\.pem"):
        CityData.from_config(path)


def _issue_for_another_name(layout: Layout, out: Path) -> tuple[Path, Path]:
    """A server certificate for `influx.invalid` only, signed by the stack's CA."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    ca_cert = x509.load_pem_x509_certificate(layout.ca_cert.read_bytes())
    ca_key = serialization.load_pem_private_key(layout.ca_key.read_bytes(), password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "influx.invalid")]))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("influx.invalid")]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    cert_path, key_path = out / "wrong-name.pem", out / "wrong-name.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)
    return cert_path, key_path


def test_the_servers_name_is_checked(https_influx: HttpsInflux, tmp_path: Path) -> None:
    """The trusted CA signed it, but for another name than the url's host: refused."""
    ca_layout = Layout(https_influx.home)
    cert, key = _issue_for_another_name(ca_layout, tmp_path)
    config, layout = _start(tmp_path / "home", cert, key)
    client = InfluxHTTP(f"https://127.0.0.1:{config.influx_port}", ca_file=ca_layout.ca_cert)
    def handshake_refused() -> InfluxTLSError | None:
        """None while influxd does not listen yet (connection refused); then its answer."""
        try:
            client.ping()
        except InfluxTLSError as exc:
            return exc
        return None

    try:
        try:
            error = wait_for(handshake_refused, READY_S, "the handshake", every_s=0.05)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{process.tail(layout.influx_log)}") from exc
    finally:
        client.close()
        influxd.stop(layout)
    assert "certificate verify failed" in str(error)
    assert "mismatch" in str(error).lower()


def test_the_dashboards_check_trusts_the_ca_it_is_given(https_influx: HttpsInflux, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    from urbanpulse.dashboards.cli import main as dashboards_main

    argv = ["check", "--influx-url", https_influx.url, "--user", "reader",
            "--password-file", str(https_influx.passwords["reader"]), "--db", "urbanpulse"]
    assert dashboards_main([*argv, "--ca-file", str(https_influx.ca_file)]) == 0
    assert "FAIL" not in capsys.readouterr().out
    # Not trusted: one error naming the server, not a failure per query.
    assert dashboards_main([*argv, "--ca-file", str(_other_ca(tmp_path))]) == 2
    captured = capsys.readouterr()
    assert "FAIL" not in captured.out
    assert f"--influx-url {https_influx.url}: " in captured.err
    assert "certificate verify failed" in captured.err
