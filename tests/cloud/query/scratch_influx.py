"""An InfluxDB of the test's own, for what the session's shared one cannot show: a server
with `max-row-limit` set (it cuts long answers short) and a database whose ledger never
held a `restarts` field. Real influxd, auth off (nothing but the test reaches it), one
database named `d` with the project's retention policies."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from urbanpulse.influx_http import InfluxHTTP
from urbanpulse.stack.process import free_ports

BINARY = "/usr/bin/influxd"
READY_S = 30.0


@contextmanager
def scratch_influx(home: Path, max_row_limit: int) -> Iterator[InfluxHTTP]:
    http_port, rpc_port = free_ports(2)
    config = home / "influxdb.conf"
    config.write_text(f"""\
reporting-disabled = true
bind-address = "127.0.0.1:{rpc_port}"
[meta]
  dir = "{home / 'meta'}"
[data]
  dir = "{home / 'data'}"
  wal-dir = "{home / 'wal'}"
  index-version = "inmem"
  query-log-enabled = false
[monitor]
  store-enabled = false
[subscriber]
  enabled = false
[continuous_queries]
  enabled = false
[http]
  bind-address = "127.0.0.1:{http_port}"
  max-row-limit = {max_row_limit}
  log-enabled = false
[logging]
  level = "warn"
""")
    log = (home / "influxd.log").open("wb")
    proc = subprocess.Popen([BINARY, "run", "-config", str(config)], stdout=log, stderr=log)
    client = InfluxHTTP(f"http://127.0.0.1:{http_port}", timeout_s=5)
    try:
        deadline = time.monotonic() + READY_S
        while not client.ping():
            assert proc.poll() is None, (home / "influxd.log").read_text()
            assert time.monotonic() < deadline, "influxd did not answer /ping"
            time.sleep(0.02)  # polling interval, not synchronisation: the loop checks /ping
        client.query('CREATE DATABASE "d"', post=True)
        for rp, duration, default in (("raw", "30d", " DEFAULT"), ("agg_1m", "400d", ""),
                                      ("agg_1h", "INF", "")):
            client.query(f'CREATE RETENTION POLICY "{rp}" ON "d" DURATION {duration} '
                         f"REPLICATION 1{default}", post=True)
        yield client
    finally:
        client.close()
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
