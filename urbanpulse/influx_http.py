"""A small InfluxDB v1 HTTP client (stdlib only): /ping, InfluxQL /query, line-protocol /write.

The v1 API is the one that works on InfluxDB 1.x, on 2.x (v1 compatibility) and on 3.x Core.
One keep-alive connection per client, guarded by a lock; a request that fails on a
reused connection the server closed meanwhile is retried once on a fresh one. An answer
the server gave before it read the whole body (InfluxDB's 413 over its max-body-size, after
which it closes: the send is cut) is read and returned, not taken for no answer.
Over https the server's certificate and name are always checked, against the system's CAs
or the CA bundle given as `ca_file`.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import socket
import ssl
import struct
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlencode, urlsplit

from urbanpulse.errors import UrbanpulseError

_EPOCHS = {"ns", "u", "µ", "ms", "s", "m", "h"}
# Answers that say "not now" about a request, not "never": Request Timeout, Too Many Requests.
RETRYABLE_4XX = frozenset({408, 429})
# Headers InfluxDB puts on its answers (1.x on every one, its 404 and 405 pages too; checked
# on 1.6.7): an answer without them and without InfluxDB's JSON error is a proxy's or another
# server's.
IDENTITY_HEADERS = ("X-Influxdb-Version", "X-Influxdb-Build")
_T = TypeVar("_T")


class InfluxError(UrbanpulseError):
    """InfluxDB answered with an error: `status` is the HTTP status (0: no answer).

    `body` is InfluxDB's own words: the "error" of a 1.x (or 3.x) JSON error, the "message"
    of a 2.x one ({"code": ..., "message": ...}), else the answer as it came. `version` is
    the answer's X-Influxdb-Version (or X-Influxdb-Build) header, None without one.
    `from_influxdb`: the answer is InfluxDB's own, not a proxy's or another server's: it
    carried one of those headers, or its body is InfluxDB's JSON error, or the error came
    inside a query's answer (`influxdb=True`). False also for an error without an answer."""

    def __init__(self, status: int, body: str, *, version: str | None = None,
                 influxdb: bool = False) -> None:
        text = _error_text(body)
        super().__init__(f"InfluxDB error {status}: {text.strip()[:500]}")
        self.status = status
        self.body = text
        self.version = version
        self.from_influxdb = influxdb or version is not None or _influxdb_error(body)

    @property
    def retryable(self) -> bool:
        """True for errors where the same request may succeed later: no answer, a 5xx, a
        408 (a proxy's timeout) or a 429 (a rate limit: InfluxDB Cloud's, 2.x quotas, a
        proxy's). Any other is refused for good: a 4xx, or a 200 whose answer holds an
        error."""
        return self.status == 0 or self.status >= 500 or self.status in RETRYABLE_4XX

    @property
    def denied(self) -> bool:
        """The user was refused: 401 (unknown user, wrong password) or 403 (a privilege
        missing, e.g. READ on the database for a query)."""
        return self.status in (401, 403)


class InfluxUnavailable(InfluxError):
    """No answer: connection refused, reset or timed out."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(0, f"{url} unavailable: {reason}")


class InfluxTLSError(InfluxUnavailable):
    """The TLS handshake failed, most often because the server's certificate is not signed
    by a trusted CA or does not name the host. Retryable like any missing answer (a writer
    keeps its points until the certificate or the CA is fixed), but `ping` raises it rather
    than answering "not ready"."""

    def __init__(self, url: str, trusted: str, reason: str) -> None:
        super().__init__(url, f"TLS handshake failed ({reason}); the server's certificate "
                              f"is checked against {trusted}")


class InfluxCAFileError(InfluxError):
    """The CA bundle given as `ca_file` cannot be read or holds no certificate."""

    def __init__(self, path: Path, reason: str) -> None:
        text = f"ca_file {path}: {reason}"
        super().__init__(0, text)
        self.args = (text,)  # not an answer of InfluxDB: no "InfluxDB error 0" before it
        self.path = path

    @property
    def retryable(self) -> bool:
        return False


@dataclass
class Series:
    """One series of a statement's answer. `partial`: the server says more rows of it
    follow (in a chunked answer) or were cut (see `InfluxHTTP.results`)."""

    name: str
    tags: dict[str, str]
    columns: list[str]
    values: list[list[Any]]
    partial: bool = False

    def rows(self) -> list[dict[str, Any]]:
        """One dict per row: column -> value, with the series' tags merged in."""
        rows: list[dict[str, Any]] = []
        for values in self.values:
            row: dict[str, Any] = dict(self.tags)
            row.update(zip(self.columns, values, strict=True))
            rows.append(row)
        return rows


@dataclass
class Result:
    """The answer to one statement. `partial`: the server says more of it follows (or
    was cut); `messages`: the server's notes on it, as (level, text)."""

    statement_id: int
    series: list[Series] = field(default_factory=list)
    partial: bool = False
    messages: list[tuple[str, str]] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        """No flag says that rows of this statement are missing."""
        return not self.partial and not any(s.partial for s in self.series)


class InfluxHTTP:
    def __init__(
        self,
        url: str,
        username: str | None = None,
        password: str | None = None,
        timeout_s: float = 10.0,
        ca_file: Path | str | None = None,
    ) -> None:
        """`ca_file`: a PEM bundle of the CAs to check an https server's certificate with
        (its name is checked too); None: the system's CAs. It is read here, once: an
        unreadable file or one without a certificate raises `InfluxCAFileError`."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"InfluxDB url must be http(s)://host:port, got {url!r}")
        if ca_file is not None and parts.scheme != "https":
            raise ValueError(f"ca_file is for an https:// url, got {url!r}")
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
        self._tls: ssl.SSLContext | None = None
        self._trusted = "the system's CAs"
        if ca_file is not None:
            self._tls = _tls_context(Path(ca_file))
            self._trusted = f"the CAs of {ca_file}"
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
            if self._scheme == "https":
                self._conn = http.client.HTTPSConnection(self._host, self._port,
                                                         timeout=self._timeout_s, context=self._tls)
            else:
                self._conn = http.client.HTTPConnection(self._host, self._port, timeout=self._timeout_s)
            self.connections_opened += 1
        return self._conn

    def _request(
        self, method: str, path: str, params: dict[str, str], body: bytes | None, ctype: str | None
    ) -> tuple[int, bytes, str | None]:
        return self._exchange(method, path, params, body, ctype, _read_all)

    def _exchange(
        self,
        method: str,
        path: str,
        params: dict[str, str],
        body: bytes | None,
        ctype: str | None,
        read: Callable[[http.client.HTTPResponse], tuple[_T, bool]],
    ) -> tuple[int, _T, str | None]:
        """One request; `read` takes what it wants of the answer and says whether it read
        all of it (a connection with some of an answer left unread is not used again).
        Returns the status, what `read` took, and InfluxDB's identity header (`_identity`)."""
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
                cut = False
                try:
                    if conn.sock is None:
                        conn.connect()  # a failed handshake is no send cut: no answer to look for
                    try:
                        conn.request(method, target, body=body, headers=headers)
                    except (BrokenPipeError, ConnectionResetError, ssl.SSLError) as sending:
                        if isinstance(sending, ssl.SSLCertVerificationError):
                            raise
                        cut = True
                        response = _answer_after_cut(conn, sending)
                    else:
                        response = conn.getresponse()
                    data, whole = read(response)
                except ssl.SSLError as exc:
                    self._drop()
                    if reused and attempt == 1 and not isinstance(exc, ssl.SSLCertVerificationError):
                        continue  # e.g. an idle connection the server closed without a TLS goodbye
                    raise InfluxTLSError(self.url, self._trusted, _ssl_reason(exc)) from exc
                except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as exc:
                    self._drop()
                    if reused and attempt == 1:
                        continue  # the server closed an idle keep-alive connection
                    raise InfluxUnavailable(self.url, str(exc) or type(exc).__name__) from exc
                except (OSError, http.client.HTTPException) as exc:
                    if isinstance(exc, socket.timeout):
                        _abort(conn)
                    self._drop()
                    reason = "timed out" if isinstance(exc, socket.timeout) else str(exc)
                    raise InfluxUnavailable(self.url, reason or type(exc).__name__) from exc
                except BaseException:
                    self._drop()  # what is left of the answer would be read as the next one
                    raise
                if cut or response.will_close or not whole:
                    self._drop()  # a cut request was sent in part: its connection is done
                return response.status, data, _identity(response)
        raise AssertionError("unreachable")

    def ping(self) -> bool:
        """True if the server answers /ping with 204 (ready); False if it does not answer.
        A failed TLS handshake raises `InfluxTLSError`: waiting would not fix it."""
        try:
            status, _, _ = self._request("GET", "/ping", {}, None, None)
        except InfluxTLSError:
            raise
        except InfluxUnavailable:
            return False
        return status == 204

    def query(
        self, q: str, *, db: str | None = None, epoch: str | None = "ns", post: bool = False
    ) -> list[dict[str, Any]]:
        """Run InfluxQL; return every series of every statement as
        {"name", "tags", "columns", "values"}. Statements that change things need post=True.
        One answer as the server gives it: see `results` for its `partial` flags."""
        return [
            {"name": s.name, "tags": s.tags, "columns": s.columns, "values": s.values}
            for result in self.results(q, db=db, epoch=epoch, post=post)
            for s in result.series
        ]

    def results(
        self,
        q: str,
        *,
        db: str | None = None,
        epoch: str | None = "ns",
        post: bool = False,
        chunk_size: int | None = None,
        max_rows: int | None = None,
    ) -> list[Result]:
        """Run InfluxQL; one `Result` per statement answered, in order.

        chunk_size=None asks for one answer. InfluxDB 1.x cuts it at its `max-row-limit`
        (if set) and its `partial` flags are then no reliable sign of a cut: 1.6 flags no
        series when the cut falls between two series, and flags a whole series of more than
        10,000 rows as partial when nothing was cut.
        chunk_size=N streams the answer in pieces of at most N rows (`chunked=true`), which
        no row limit applies to; the pieces are joined here, so a flag still set on the
        last piece of a statement or series means the stream ended before it did.
        max_rows=M (with chunk_size) stops reading a stream once more than M rows came and
        its last piece says more follow (that flag stays set), so that an answer far larger
        than expected never sits in memory whole; the connection is then closed."""
        params = {"q": q}
        if db is not None:
            params["db"] = db
        if epoch is not None:
            if epoch not in _EPOCHS:
                raise ValueError(f"epoch must be one of {sorted(_EPOCHS)}, got {epoch!r}")
            params["epoch"] = epoch
        if chunk_size is not None:
            if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
                raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")
            params["chunked"] = "true"
            params["chunk_size"] = str(chunk_size)
        if max_rows is not None and (chunk_size is None or isinstance(max_rows, bool)
                                     or not isinstance(max_rows, int) or max_rows < 1):
            raise ValueError(f"max_rows must be a positive integer, with chunk_size: got {max_rows!r}")

        def read(response: http.client.HTTPResponse) -> tuple[list[Result] | str, bool]:
            if response.status != 200:
                return response.read().decode("utf-8", errors="replace"), True
            try:
                return _read_results(response, max_rows)
            except InfluxError as exc:
                if exc.version is None and (version := _identity(response)) is not None:
                    exc.version, exc.from_influxdb = version, True
                raise

        if post:
            body = urlencode(params).encode()
            status, answer, version = self._exchange(
                "POST", "/query", {}, body, "application/x-www-form-urlencoded", read
            )
        else:
            status, answer, version = self._exchange("GET", "/query", params, None, None, read)
        if isinstance(answer, str):
            raise InfluxError(status, answer, version=version)
        return answer

    def query_points(
        self, q: str, *, db: str | None = None, epoch: str | None = "ns"
    ) -> list[dict[str, Any]]:
        """One dict per row: column -> value, with the series' tags merged in (`Series.rows`)."""
        return [row for result in self.results(q, db=db, epoch=epoch)
                for s in result.series for row in s.rows()]

    def write(
        self, lines: bytes, *, db: str, rp: str | None = None, precision: str = "ns"
    ) -> None:
        """POST line protocol; InfluxError unless the server answers 204."""
        params = {"db": db, "precision": precision}
        if rp is not None:
            params["rp"] = rp
        status, data, version = self._request("POST", "/write", params, lines,
                                              "text/plain; charset=utf-8")
        if status != 204:
            raise InfluxError(status, data.decode("utf-8", errors="replace"), version=version)


def _abort(conn: http.client.HTTPConnection) -> None:
    """Closes a timed-out connection with a reset instead of a FIN. A plain close leaves the
    kernel sending what the request had not delivered yet (on a dead link, for up to about
    100 s), so the request could still reach InfluxDB after its retry and a newer write of
    the same points, and put the older values back; a reset drops it. A request the server
    had already read in full is the sink's to rewrite (`cloud.sink`, writes with no answer)."""
    sock = conn.sock
    if sock is not None:
        with contextlib.suppress(OSError):  # already gone: nothing of it left to send
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def _answer_after_cut(conn: http.client.HTTPConnection, sending: OSError) -> http.client.HTTPResponse:
    """The answer to a request whose send was cut (`sending`: a broken pipe, a reset, an SSL
    error), if the server gave one: a server may answer before it has read the whole body
    and close (InfluxDB 1.x's 413 over its max-body-size, 3.x's 500 over its request size),
    and its answer is then there to be read, as urllib3 and Go's client read it. Without
    one (a reset before any answer, a keep-alive connection the server had closed), the
    send's error stands."""
    try:
        return conn.getresponse()
    except (OSError, http.client.HTTPException):
        raise sending from None


def check_ca_file(ca_file: Path) -> None:
    """Raises `InfluxCAFileError` if `ca_file` cannot be read or holds no certificate."""
    _tls_context(ca_file)


def _tls_context(ca_file: Path) -> ssl.SSLContext:
    """Certificate and host name required, trusting only the CAs of `ca_file`."""
    try:
        return ssl.create_default_context(cafile=str(ca_file))
    except ssl.SSLError as exc:
        raise InfluxCAFileError(ca_file, "no PEM certificate could be read from it "
                                         f"({_ssl_reason(exc)})") from exc
    except OSError as exc:
        raise InfluxCAFileError(ca_file, f"cannot be read: {exc.strerror or exc}") from exc


def _ssl_reason(exc: ssl.SSLError) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError) and exc.verify_message:
        return f"certificate verify failed: {exc.verify_message}"
    return str(exc.reason or exc)


def _error_text(text: str) -> str:
    """InfluxDB's words in an error answer: 1.x's (and 3.x's) {"error": ...}, 2.x's
    {"code": ..., "message": ...} (its message; its code when the message is empty)."""
    decoded = _json_object(text)
    if decoded is None:
        return text
    if "error" in decoded:
        return str(decoded["error"])
    if "code" in decoded and "message" in decoded:
        return str(decoded["message"] or decoded["code"])
    return text


def _influxdb_error(text: str) -> bool:
    """`text` is InfluxDB's JSON error (as `_error_text` reads it)."""
    decoded = _json_object(text)
    return decoded is not None and ("error" in decoded or {"code", "message"} <= decoded.keys())


def _json_object(text: str) -> dict[str, Any] | None:
    if not text.lstrip().startswith("{"):
        return None
    try:
        decoded = json.loads(text)
    except json.JSONDecodeError:
        return None
    return decoded if isinstance(decoded, dict) else None


def _identity(response: http.client.HTTPResponse) -> str | None:
    """The answer's X-Influxdb-Version (else X-Influxdb-Build) header: None, not InfluxDB's."""
    for name in IDENTITY_HEADERS:
        value = response.getheader(name)
        if value is not None:
            return value
    return None


def _read_all(response: http.client.HTTPResponse) -> tuple[bytes, bool]:
    return response.read(), True


def _read_results(
    response: http.client.HTTPResponse, max_rows: int | None
) -> tuple[list[Result], bool]:
    """A 200 answer's results, read piece by piece (InfluxDB writes each JSON document of a
    stream on a line of its own); stops early, (results, False), past `max_rows` rows."""
    results: list[Result] = []
    rows = documents_read = 0
    pending = ""
    while line := response.readline():
        pending += line.decode("utf-8", errors="replace")
        if not pending.endswith("\n"):
            continue  # the end of the answer: read below
        try:
            documents = list(_documents(200, pending))
        except InfluxError:
            continue  # a document written over several lines, not whole yet
        pending = ""
        documents_read += len(documents)
        rows += _add(results, documents)
        if max_rows is not None and rows > max_rows and results and results[-1].partial:
            return results, False
    documents = list(_documents(200, pending))
    if not documents_read and not documents:
        # every statement is answered, with rows or not: no document is no answer
        raise InfluxError(200, "answer is empty")
    _add(results, documents)
    return results, True


def _add(results: list[Result], documents: list[dict[str, Any]]) -> int:
    """The documents' pieces joined to `results`; their number of rows."""
    rows = 0
    for answer in documents:
        if "error" in answer:
            raise InfluxError(200, str(answer["error"]), influxdb=True)
        for piece in answer.get("results", []):
            if "error" in piece:
                raise InfluxError(200, str(piece["error"]), influxdb=True)
            result = _result(piece)
            rows += sum(len(s.values) for s in result.series)
            _join(results, result)
    return rows


def _documents(status: int, text: str) -> Iterator[dict[str, Any]]:
    """The JSON documents of an answer: one, or one per piece of a chunked answer."""
    decoder = json.JSONDecoder()
    at = 0
    while True:
        while at < len(text) and text[at].isspace():
            at += 1
        if at == len(text):
            return
        try:
            document, at = decoder.raw_decode(text, at)
        except json.JSONDecodeError as exc:
            raise InfluxError(status, f"answer is not JSON: {text[at:at + 200]}") from exc
        if not isinstance(document, dict):
            raise InfluxError(status, f"answer is not a JSON object: {text[:200]}")
        yield document


def _result(piece: dict[str, Any]) -> Result:
    return Result(
        statement_id=int(piece.get("statement_id", 0)),
        series=[
            Series(
                name=s.get("name", ""),
                tags=s.get("tags") or {},
                columns=s.get("columns", []),
                values=s.get("values") or [],
                partial=bool(s.get("partial", False)),
            )
            for s in piece.get("series", [])
        ],
        partial=bool(piece.get("partial", False)),
        messages=[(m.get("level", ""), m.get("text", "")) for m in piece.get("messages", [])],
    )


def _join(results: list[Result], piece: Result) -> None:
    """A chunked answer's piece joined to what came before: the rows of a series the last
    piece left partial go on in this one; the flags become this piece's."""
    last = results[-1] if results else None
    if last is None or last.statement_id != piece.statement_id:
        results.append(piece)
        return
    series = piece.series
    if last.series and series:
        tail, head = last.series[-1], series[0]
        if tail.partial and (tail.name, tail.tags, tail.columns) == (head.name, head.tags, head.columns):
            tail.values.extend(head.values)
            tail.partial = head.partial
            series = series[1:]
    last.series.extend(series)
    last.partial = piece.partial
    last.messages.extend(piece.messages)
