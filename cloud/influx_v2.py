"""InfluxDB 2.x through the official client (influxdb-client), for deployments that want
the v2 API and tokens rather than 2.x's v1 compatibility endpoint.

Only the transport changes: the writer above it (cloud.sink.InfluxWriter) batches, retries
and blocks exactly as with v1, and durability still comes from our journal, never from
the client's own batching (which drops a batch after its retries). Each v1 database +
retention policy maps to the 2.x bucket "<database>/<rp>", the name 2.x's DBRP mapping
uses.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

from urbanpulse.influx_http import (
    IDENTITY_HEADERS,
    InfluxError,
    InfluxTLSError,
    InfluxUnavailable,
    check_ca_file,
)


class InfluxV2Client:
    def __init__(self, url: str, token: str, org: str, timeout_s: float = 30.0,
                 ca_file: Path | None = None) -> None:
        """`ca_file`: the CAs (PEM) an https server's certificate must chain to, its name
        checked too; None: the system's CAs. Read here once, like InfluxHTTP's: an unreadable
        file or one without a certificate raises `InfluxCAFileError`."""
        from influxdb_client.client.influxdb_client import InfluxDBClient
        from influxdb_client.client.write_api import SYNCHRONOUS

        self.url = url
        self.org = org
        self._trusted = "the system's CAs"
        if ca_file is not None:
            check_ca_file(ca_file)
            self._trusted = f"the CAs of {ca_file}"
        self._client = InfluxDBClient(url=url, token=token, org=org, timeout=int(timeout_s * 1000),
                                      enable_gzip=False, verify_ssl=True,
                                      ssl_ca_cert=None if ca_file is None else str(ca_file))
        self._write_api: Any = self._client.write_api(write_options=SYNCHRONOUS)

    def write(self, lines: bytes, *, db: str, rp: str | None = None, precision: str = "ns") -> None:
        from influxdb_client.domain.write_precision import WritePrecision
        from influxdb_client.rest import ApiException
        from urllib3.exceptions import HTTPError, SSLError

        bucket = f"{db}/{rp}" if rp else db
        try:
            self._write_api.write(bucket=bucket, org=self.org, record=lines,
                                  write_precision=WritePrecision.NS)
        except ApiException as exc:
            # the client turns urllib3's SSLError into an ApiException without a status
            if isinstance(exc.__context__, SSLError):
                raise InfluxTLSError(self.url, self._trusted, _tls_reason(exc.__context__)) from exc
            raise InfluxError(int(exc.status or 0), str(exc.body or exc.reason),
                              version=_identity(exc.headers)) from exc
        except (HTTPError, OSError) as exc:
            raise InfluxUnavailable(self.url, str(exc)) from exc

    def close(self) -> None:
        self._client.close()  # type: ignore[no-untyped-call]


def _identity(headers: Any) -> str | None:
    """The answer's X-Influxdb-Version (else X-Influxdb-Build) header, as InfluxHTTP reads
    it (2.x puts both on every answer, its errors too): None without one, the answer is then
    not known to be InfluxDB's (`cloud.sink.influxdb_verdict`). `headers`: the client's
    exception's, case-insensitive (urllib3's HTTPHeaderDict), or None."""
    if headers is None:
        return None
    for name in IDENTITY_HEADERS:
        value = headers.get(name)
        if value is not None:
            return str(value)
    return None


def _tls_reason(exc: BaseException) -> str:
    cause = exc.args[0] if exc.args else exc
    if isinstance(cause, ssl.SSLCertVerificationError) and cause.verify_message:
        return f"certificate verify failed: {cause.verify_message}"
    return str(cause)
