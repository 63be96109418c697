"""InfluxDB 2.x through the official client (influxdb-client), for deployments that want
the v2 API and tokens rather than 2.x's v1 compatibility endpoint.

Only the transport changes: the writer above it (cloud.sink.InfluxWriter) batches, retries
and blocks exactly as with v1, and durability still comes from our journal, never from
the client's own batching (which drops a batch after its retries). Each v1 database +
retention policy maps to the 2.x bucket "<database>/<rp>", the name 2.x's DBRP mapping
uses.
"""

from __future__ import annotations

from typing import Any

from urbanpulse.influx_http import InfluxError, InfluxUnavailable


class InfluxV2Client:
    def __init__(self, url: str, token: str, org: str, timeout_s: float = 30.0) -> None:
        from influxdb_client.client.influxdb_client import InfluxDBClient
        from influxdb_client.client.write_api import SYNCHRONOUS

        self.url = url
        self.org = org
        self._client = InfluxDBClient(url=url, token=token, org=org, timeout=int(timeout_s * 1000),
                                      enable_gzip=False)
        self._write_api: Any = self._client.write_api(write_options=SYNCHRONOUS)

    def write(self, lines: bytes, *, db: str, rp: str | None = None, precision: str = "ns") -> None:
        from influxdb_client.domain.write_precision import WritePrecision
        from influxdb_client.rest import ApiException
        from urllib3.exceptions import HTTPError

        bucket = f"{db}/{rp}" if rp else db
        try:
            self._write_api.write(bucket=bucket, org=self.org, record=lines,
                                  write_precision=WritePrecision.NS)
        except ApiException as exc:
            raise InfluxError(int(exc.status or 0), str(exc.body or exc.reason)) from exc
        except (HTTPError, OSError) as exc:
            raise InfluxUnavailable(self.url, str(exc)) from exc

    def close(self) -> None:
        self._client.close()  # type: ignore[no-untyped-call]
