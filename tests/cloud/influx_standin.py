"""A stand-in HTTP server on 127.0.0.1 for the sink's tests: it answers in InfluxDB's place
(another version than the 1.6.7 that runs here) or in front of it (a proxy, a gateway), as
its `StandIn` says, and keeps every request it was sent.

Subclass `StandIn` with what the server knows (its answers, what it stored) and override
`answer`; `serving` starts it on a free port, sets its `url`, and stops it on leaving.
`v2_writer` is the sink's writer of a stand-in through the v2 API (the official client)."""

from __future__ import annotations

import ssl
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

from cloud.config import parse_cloud_config
from cloud.sink import InfluxWriter, make_writer


@dataclass(frozen=True)
class Request:
    """A request as the server read it; `target`: its path and query, as sent."""

    method: str
    target: str
    headers: tuple[tuple[str, str], ...]
    body: bytes

    @property
    def path(self) -> str:
        return urlsplit(self.target).path

    @property
    def query(self) -> dict[str, list[str]]:
        return parse_qs(urlsplit(self.target).query)

    def param(self, name: str) -> str:
        """The first value of the query parameter `name` (KeyError without one)."""
        return self.query[name][0]

    def header(self, name: str, default: str = "") -> str:
        """The first header called `name`, whatever its case, or `default`."""
        return next((v for k, v in self.headers if k.lower() == name.lower()), default)


@dataclass(frozen=True)
class Reply:
    """An answer: its headers in the order sent, then Content-Length (the server's own)."""

    status: int
    body: bytes = b""
    headers: Mapping[str, str] | Sequence[tuple[str, str]] = ()

    def header_pairs(self) -> Sequence[tuple[str, str]]:
        return list(self.headers.items()) if isinstance(self.headers, Mapping) else self.headers


Responder = Callable[[Request], Reply]


@dataclass
class StandIn:
    """A stand-in server's side of the tests: `answer` answers each request (a 204 with no
    header here); `requests`, every request in the order they came; `url`, once serving."""

    requests: list[Request] = field(default_factory=list, init=False)
    url: str = field(default="", init=False)

    def answer(self, request: Request) -> Reply:
        return Reply(204)

    @property
    def bodies(self) -> list[bytes]:
        return [r.body for r in self.requests]


S = TypeVar("S", bound=StandIn)


@contextmanager
def serving(stand_in: S, *, tls: ssl.SSLContext | None = None,
            protocol_version: str = "HTTP/1.1") -> Iterator[S]:
    """`stand_in` served on a free port of 127.0.0.1 (HTTPS with `tls`, a server side
    context) until the block is left. Each GET or POST is recorded, then answered by
    `stand_in.answer`, whose state may change while it serves. "HTTP/1.1" keeps a client's
    connection open between requests; "HTTP/1.0" closes it after each answer."""

    class Handler(BaseHTTPRequestHandler):
        # The head and the body go out in two writes: with Nagle's algorithm the body
        # waited for the client's delayed ACK, some 40 ms an answer.
        disable_nagle_algorithm = True

        def _serve(self) -> None:
            request = Request(self.command, self.path, tuple(self.headers.items()),
                              self.rfile.read(int(self.headers.get("Content-Length") or 0)))
            stand_in.requests.append(request)
            reply = stand_in.answer(request)
            self.send_response(reply.status)
            for name, value in reply.header_pairs():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(reply.body)))
            self.end_headers()
            self.wfile.write(reply.body)

        do_GET = do_POST = _serve

        def log_message(self, format: str, *args: Any) -> None:
            pass

    Handler.protocol_version = protocol_version
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    # serve_forever looks for shutdown() every poll_interval: 0.5 s by default, a teardown each
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    stand_in.url = f"{'https' if tls else 'http'}://127.0.0.1:{server.server_address[1]}"
    try:
        yield stand_in
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def v2_writer(url: str, tmp_path: Path, wait: Callable[[float], bool], *, token: str = "t0ken",
              org: str = "o", database: str = "city") -> InfluxWriter:
    """The sink's writer of `url` through the v2 API, its token in a file of `tmp_path`."""
    token_file = tmp_path / "token"
    token_file.write_text(f"{token}\n")
    cfg = parse_cloud_config({
        "mqtt": {"password_file": "p", "ca_file": "c"},
        "influx": {"url": url, "api": "v2", "token_file": str(token_file), "org": org,
                   "database": database}})
    return make_writer(cfg.influx, wait=wait)
