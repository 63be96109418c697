"""A small InfluxDB v1 HTTP client (stdlib only): /ping, InfluxQL /query, line-protocol /write.

The v1 API is the one that works on InfluxDB 1.x, on 2.x (v1 compatibility) and on 3.x Core.
One keep-alive connection per client, guarded by a lock; a request that fails on a
reused connection the server closed meanwhile is retried once on a fresh one.
"""

from __future__ import annotations

import base64
import http.client
import json
import socket
import threading
from typing import Any
from urllib.parse import urlencode, urlsplit

from urbanpulse.errors import UrbanpulseError

_EPOCHS = {"ns", "u", "µ", "ms", "s", "m", "h"}


class InfluxError(UrbanpulseError):
    """InfluxDB answered with an error: `status` is the HTTP status (0: no answer)."""

    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"InfluxDB error {status}: {body.strip()[:500]}")
        self.status = status
        self.body = body

    @property
    def retryable(self) -> bool:
        """True for errors where the same request may succeed later (unavailable, 5xx)."""
        return self.status == 0 or self.status >= 500


class InfluxUnavailable(InfluxError):
    """No answer: connection refused, reset or timed out."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(0, f"{url} unavailable: {reason}")


class InfluxHTTP:
    def __init__(
        self,
        url: str,
        username: str | None = None,
        password: str | None = None,
        timeout_s: float = 10.0,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"InfluxDB url must be http(s)://host:port, got {url!r}")
        self.url = url.rstrip("/")
        self._scheme = parts.scheme
        self._host = parts.hostname
        self._port = parts.port or (443 if parts.scheme == "https" else 8086)
        self._base = parts.path.rstrip("/")
        self._timeout_s = timeout_s
        self._headers: dict[str, str] = {}
        if username is not None:
            token = base64.b64encode(f"{username}:{password or ''}".encode()).decode()
            self._headers["Authorization"] = f"Basic {token}"
        self._conn: http.client.HTTPConnection | None = None
        self.connections_opened = 0
        self._lock = threading.Lock()

    def __enter__(self) -> InfluxHTTP:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            self._drop()

    def _drop(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            cls = http.client.HTTPSConnection if self._scheme == "https" else http.client.HTTPConnection
            self._conn = cls(self._host, self._port, timeout=self._timeout_s)
            self.connections_opened += 1
        return self._conn

    def _request(
        self, method: str, path: str, params: dict[str, str], body: bytes | None, ctype: str | None
    ) -> tuple[int, bytes]:
        target = f"{self._base}{path}"
        if params:
            target += "?" + urlencode(params)
        headers = dict(self._headers)
        if ctype is not None:
            headers["Content-Type"] = ctype
        with self._lock:
            for attempt in (1, 2):
                reused = self._conn is not None
                conn = self._connection()
                try:
                    conn.request(method, target, body=body, headers=headers)
                    response = conn.getresponse()
                    data = response.read()
                except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as exc:
                    self._drop()
                    if reused and attempt == 1:
                        continue  # the server closed an idle keep-alive connection
                    raise InfluxUnavailable(self.url, str(exc) or type(exc).__name__) from exc
                except (OSError, http.client.HTTPException) as exc:
                    self._drop()
                    reason = "timed out" if isinstance(exc, socket.timeout) else str(exc)
                    raise InfluxUnavailable(self.url, reason or type(exc).__name__) from exc
                if response.will_close:
                    self._drop()
                return response.status, data
        raise AssertionError("unreachable")

    def ping(self) -> bool:
        """True if the server answers /ping with 204 (ready)."""
        try:
            status, _ = self._request("GET", "/ping", {}, None, None)
        except InfluxUnavailable:
            return False
        return status == 204

    def query(
        self, q: str, *, db: str | None = None, epoch: str | None = "ns", post: bool = False
    ) -> list[dict[str, Any]]:
        """Run InfluxQL; return every series of every statement as
        {"name", "tags", "columns", "values"}. Statements that change things need post=True."""
        params = {"q": q}
        if db is not None:
            params["db"] = db
        if epoch is not None:
            if epoch not in _EPOCHS:
                raise ValueError(f"epoch must be one of {sorted(_EPOCHS)}, got {epoch!r}")
            params["epoch"] = epoch
        if post:
            body = urlencode(params).encode()
            status, data = self._request(
                "POST", "/query", {}, body, "application/x-www-form-urlencoded"
            )
        else:
            status, data = self._request("GET", "/query", params, None, None)
        text = data.decode("utf-8", errors="replace")
        if status != 200:
            raise InfluxError(status, _error_text(text))
        try:
            decoded = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InfluxError(status, f"answer is not JSON: {text[:200]}") from exc
        if "error" in decoded:
            raise InfluxError(status, str(decoded["error"]))
        series: list[dict[str, Any]] = []
        for result in decoded.get("results", []):
            if "error" in result:
                raise InfluxError(status, str(result["error"]))
            for s in result.get("series", []):
                series.append(
                    {
                        "name": s.get("name", ""),
                        "tags": s.get("tags") or {},
                        "columns": s.get("columns", []),
                        "values": s.get("values", []),
                    }
                )
        return series

    def query_points(
        self, q: str, *, db: str | None = None, epoch: str | None = "ns"
    ) -> list[dict[str, Any]]:
        """One dict per row: column -> value, with the series' tags merged in."""
        points: list[dict[str, Any]] = []
        for s in self.query(q, db=db, epoch=epoch):
            for row in s["values"]:
                point = dict(s["tags"])
                point.update(zip(s["columns"], row, strict=True))
                points.append(point)
        return points

    def write(
        self, lines: bytes, *, db: str, rp: str | None = None, precision: str = "ns"
    ) -> None:
        """POST line protocol; InfluxError unless the server answers 204."""
        params = {"db": db, "precision": precision}
        if rp is not None:
            params["rp"] = rp
        status, data = self._request("POST", "/write", params, lines, "text/plain; charset=utf-8")
        if status != 204:
            raise InfluxError(status, _error_text(data.decode("utf-8", errors="replace")))


def _error_text(text: str) -> str:
    try:
        decoded = json.loads(text)
    except json.JSONDecodeError:
        return text
    if isinstance(decoded, dict) and "error" in decoded:
        return str(decoded["error"])
    return text
