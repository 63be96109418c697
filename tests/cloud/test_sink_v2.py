"""The v2-API transport. InfluxDB 2.x cannot run here (Debian 12 ships 1.6.7 only), so a
small HTTP server on 127.0.0.1 stands in for its /api/v2/write endpoint and records what
the official client sends; the v1 path is tested against the real InfluxDB elsewhere."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from cloud.config import parse_cloud_config
from cloud.sink import InfluxWriter, make_writer
from urbanpulse.errors import ConfigError
from urbanpulse.influx_http import InfluxError


class FakeV2(ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.requests: list[tuple[str, dict[str, list[str]], str, bytes]] = []
        self.answers: list[int] = []


class Handler(BaseHTTPRequestHandler):
    server: FakeV2

    def do_POST(self) -> None:
        url = urlsplit(self.path)
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.server.requests.append((url.path, parse_qs(url.query),
                                     self.headers.get("Authorization", ""), body))
        status = self.server.answers.pop(0) if self.server.answers else 204
        self.send_response(status)
        payload = b'{"code":"invalid","message":"field type conflict"}' if status != 204 else b""
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def fake_v2() -> Iterator[FakeV2]:
    server = FakeV2()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _writer(fake: FakeV2, tmp_path: Path) -> InfluxWriter:
    token = tmp_path / "token"
    token.write_text("s3cret-token\n")
    cfg = parse_cloud_config({
        "mqtt": {"password_file": "p", "ca_file": "c"},
        "influx": {"url": f"http://127.0.0.1:{fake.server_address[1]}", "api": "v2",
                   "token_file": str(token), "org": "hanoi", "database": "urbanpulse"}})
    return make_writer(cfg.influx, wait=lambda s: False)


def test_points_go_to_the_db_rp_bucket_with_the_token(fake_v2: FakeV2, tmp_path: Path) -> None:
    writer = _writer(fake_v2, tmp_path)
    writer.write([("raw", "air_pm,site=s pm25=1.0 1"), ("agg_1m", "air_pm,site=s count=1i 0"),
                  ("raw", "air_pm,site=s pm25=2.0 2")])
    by_bucket = {q["bucket"][0]: (path, q, auth, body) for path, q, auth, body in fake_v2.requests}
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
