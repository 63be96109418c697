"""The v2-API transport. InfluxDB 2.x cannot run here (Debian 12 ships 1.6.7 only), so a
small HTTP(S) server on 127.0.0.1 stands in for its /api/v2/write endpoint and records what
the official client sends; the v1 path is tested against the real InfluxDB elsewhere."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from cloud.config import parse_cloud_config
from cloud.errors import SinkError
from cloud.influx_v2 import InfluxV2Client
from cloud.sink import InfluxWriter, make_writer
from tests.cloud.influx_standin import Reply, Request, StandIn, serving, v2_writer
from urbanpulse.errors import ConfigError
from urbanpulse.influx_http import InfluxError, InfluxTLSError
from urbanpulse.stack.layout import Layout
from urbanpulse.stack.tls import ensure_tls


@dataclass
class FakeV2(StandIn):
    """Answers each request with the next status of `answers`, then 204, with 2.x's headers
    and, but for a 204, its JSON error. Served HTTP/1.0: each connection closed after its
    answer."""

    answers: list[int] = field(default_factory=list)

    def answer(self, request: Request) -> Reply:
        status = self.answers.pop(0) if self.answers else 204
        payload = b'{"code":"invalid","message":"field type conflict"}' if status != 204 else b""
        # as 2.x, on every answer: without them a 400 is no verdict of InfluxDB's on the lines
        return Reply(status, payload, {"X-Influxdb-Build": "OSS", "X-Influxdb-Version": "v2.7.10"})

    def sent(self) -> list[tuple[str, dict[str, list[str]], str, bytes]]:
        """Each request's path, query, Authorization header and body."""
        return [(r.path, r.query, r.header("Authorization"), r.body) for r in self.requests]


@pytest.fixture
def fake_v2() -> Iterator[FakeV2]:
    with serving(FakeV2(), protocol_version="HTTP/1.0") as server:
        yield server


def _writer(fake: FakeV2, tmp_path: Path) -> InfluxWriter:
    return v2_writer(fake.url, tmp_path, lambda s: False, token="s3cret-token", org="hanoi",
                     database="urbanpulse")


def test_points_go_to_the_db_rp_bucket_with_the_token(fake_v2: FakeV2, tmp_path: Path) -> None:
    writer = _writer(fake_v2, tmp_path)
    writer.write([("raw", "air_pm,site=s pm25=1.0 1"), ("agg_1m", "air_pm,site=s count=1i 0"),
                  ("raw", "air_pm,site=s pm25=2.0 2")])
    by_bucket = {q["bucket"][0]: (path, q, auth, body) for path, q, auth, body in fake_v2.sent()}
    path, query, auth, body = by_bucket["urbanpulse/raw"]
    assert path == "/api/v2/write"
    assert query["org"] == ["hanoi"]
    assert query["precision"] == ["ns"]
    assert auth == "Token s3cret-token"
    assert body == b"air_pm,site=s pm25=1.0 1\nair_pm,site=s pm25=2.0 2"
    assert by_bucket["urbanpulse/agg_1m"][3] == b"air_pm,site=s count=1i 0"
    assert writer.stats.points == 3


def test_unavailable_is_retried_and_a_refusal_is_counted(fake_v2: FakeV2, tmp_path: Path) -> None:
    writer = _writer(fake_v2, tmp_path)
    fake_v2.answers = [503, 503, 204]
    writer.write([("raw", "m v=1.0 1")])
    assert len(fake_v2.requests) == 3
    assert writer.stats.retries == 2
    fake_v2.answers = [400]
    writer.write([("raw", "m v=\"x\" 2")])
    assert writer.stats.refused_requests == 1
    assert "field type conflict" in (writer.stats.last_error or "")


def test_v2_requires_a_token_file() -> None:
    with pytest.raises(ConfigError, match=r"influx\.token_file"):
        parse_cloud_config({"mqtt": {"password_file": "p", "ca_file": "c"}, "influx": {"api": "v2"}})
    assert InfluxError(503, "x").retryable


# Over HTTPS: the stand-in endpoint serves the stack's server certificate (127.0.0.1 and
# localhost, signed by the stack's CA), so the official client's handshake, certificate and
# name checks are real; only the 2.x server behind them is not.

@pytest.fixture
def tls_layout(tmp_path_factory: pytest.TempPathFactory) -> Layout:
    layout = Layout(tmp_path_factory.mktemp("v2-tls"))
    ensure_tls(layout)
    return layout


@contextmanager
def _serve_https(cert: Path, key: Path) -> Iterator[FakeV2]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    with serving(FakeV2(), tls=context, protocol_version="HTTP/1.0") as server:
        yield server


@pytest.fixture
def https_v2(tls_layout: Layout) -> Iterator[FakeV2]:
    with _serve_https(tls_layout.server_cert, tls_layout.server_key) as server:
        yield server


def test_over_https_the_writer_trusts_the_configured_ca(https_v2: FakeV2, tls_layout: Layout,
                                                        tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("s3cret-token\n")
    cfg = parse_cloud_config({
        "mqtt": {"password_file": "p", "ca_file": "c"},
        "influx": {"url": https_v2.url, "api": "v2", "ca_file": str(tls_layout.ca_cert),
                   "token_file": str(token), "org": "hanoi"}})
    writer = make_writer(cfg.influx, wait=lambda s: False)
    writer.write([("raw", "air_pm,site=s pm25=1.0 1")])
    assert [(p, q["bucket"], auth, body) for p, q, auth, body in https_v2.sent()] == [
        ("/api/v2/write", ["urbanpulse/raw"], "Token s3cret-token", b"air_pm,site=s pm25=1.0 1")]
    assert (writer.stats.points, writer.stats.retries) == (1, 0)


def _refused(url: str, ca_file: Path | None) -> InfluxTLSError:
    client = InfluxV2Client(url, "s3cret-token", "hanoi", timeout_s=5.0, ca_file=ca_file)
    try:
        with pytest.raises(InfluxTLSError) as caught:
            client.write(b"m v=1.0 1", db="urbanpulse", rp="raw")
    finally:
        client.close()
    assert caught.value.retryable  # the writer keeps its points until the CA or certificate is fixed
    return caught.value


def test_a_server_the_ca_did_not_sign_is_refused_with_a_tls_error(https_v2: FakeV2,
                                                                 tmp_path: Path) -> None:
    other = Layout(tmp_path / "other")
    ensure_tls(other)
    error = _refused(https_v2.url, other.ca_cert)
    assert "certificate verify failed: unable to get local issuer certificate" in str(error)
    assert f"the CAs of {other.ca_cert}" in str(error)
    # without a ca_file only the system's CAs are trusted: the private CA is not among them
    assert "the system's CAs" in str(_refused(https_v2.url, None))
    assert https_v2.requests == []


def test_the_servers_name_is_checked(tls_layout: Layout, tmp_path: Path) -> None:
    """Signed by the trusted CA, but for influx.invalid, not the url's 127.0.0.1."""
    from tests.cloud.test_influx_tls import _issue_for_another_name

    cert, key = _issue_for_another_name(tls_layout, tmp_path)
    with _serve_https(cert, key) as server:
        error = _refused(server.url, tls_layout.ca_cert)
        assert "certificate verify failed" in str(error)
        assert "IP address mismatch, certificate is not valid for '127.0.0.1'" in str(error)
        assert server.requests == []


def test_an_unreadable_ca_file_is_refused_when_the_writer_is_made(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("t\n")
    (tmp_path / "garbage.pem").write_text("not a certificate\n")
    for name, reason in (("missing.pem", "cannot be read"), ("garbage.pem", "no PEM certificate")):
        cfg = parse_cloud_config({
            "mqtt": {"password_file": "p", "ca_file": "c"},
            "influx": {"url": "https://127.0.0.1:1", "api": "v2", "token_file": str(tmp_path / "token"),
                       "ca_file": str(tmp_path / name)}})
        with pytest.raises(SinkError, match=rf"^influx\.ca_file: ca_file {tmp_path / name}: {reason}"):
            make_writer(cfg.influx)
