"""Fixtures of the dashboards' tests on the real InfluxDB."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from cloud.config import parse_cloud_config
from cloud.initdb import init_db
from cloud.sink import InfluxWriter
from urbanpulse.influx_http import InfluxHTTP
from urbanpulse.stack import StackInfo


@dataclass(frozen=True)
class Store:
    writer: InfluxWriter
    client: InfluxHTTP
    database: str


@pytest.fixture
def store(db_ready: StackInfo) -> Iterator[Store]:
    """A database of its own, made by `cloud init-db`, written by the sink's writer: the
    `node_ts` field these events write would show in other tests' frames of `events` (a
    measurement's every field is a column of SELECT *)."""
    creds = db_ready.influx("admin")
    database = f"fault_clock_{time.monotonic_ns()}"
    with InfluxHTTP(creds.url, creds.username, creds.password()) as client:
        init_db(client, database, parse_cloud_config(
            {"mqtt": {"password_file": "x", "ca_file": "x"}, "influx": {"password_file": "x"}}).retention)
        writer = InfluxWriter(InfluxHTTP(creds.url, creds.username, creds.password()), database, 5000)
        try:
            yield Store(writer, client, database)
        finally:
            writer.close()
            client.query(f'DROP DATABASE "{database}"', post=True)
