"""Every example of docs/analyst-queries.md runs against the session's InfluxDB: the Python
blocks in order in one namespace, the shell command through the CLI. Only where the doc
names a deployment's files (the password, the config, the URL) does the test put its own."""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from cloud.logic.lines import line
from cloud.query import CityData
from cloud.query.cli import main
from urbanpulse.clock import to_epoch_ns
from urbanpulse.influx_http import InfluxHTTP
from urbanpulse.stack import StackInfo

from .conftest import City
from .test_query_cli import write_config
from .test_query_rollups import site  # noqa: F401 - the fixture: doors, queues, air, CO2

pytestmark = pytest.mark.stack
DOC = Path(__file__).resolve().parents[3] / "docs" / "analyst-queries.md"


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)


def test_the_doc_has_examples() -> None:
    assert len(_blocks("python")) >= 10
    assert any("urbanpulse query ledger" in b for b in _blocks("sh"))


def test_every_example_runs(db_ready: StackInfo, city: City, site: City, tmp_path: Path,  # noqa: F811
                            monkeypatch: pytest.MonkeyPatch,
                            influx_client: Callable[[str | None], InfluxHTTP]) -> None:
    # every measurement the examples read has been stored (the doc's names match nothing)
    # outbox_depth a float, as the processor writes it (an int would conflict in InfluxDB
    # with the other tests' node_status points)
    status = line("node_status", {"site": city.site, "node": "n"},
                  {"outbox_depth": 0.0, "state": "ok"}, to_epoch_ns(city.at(1)))
    influx_client("writer").write(status.encode(), db=db_ready.database, rp="raw")
    config = write_config(db_ready, tmp_path)
    reader = db_ready.influx("reader")
    local = {"/etc/urbanpulse/influx-reader.password": str(reader.password_file),
             "/etc/urbanpulse/cloud.toml": str(config),
             "http://127.0.0.1:8086": reader.url}
    monkeypatch.chdir(tmp_path)
    (command,) = [b for b in _blocks("sh") if "urbanpulse query" in b]
    argv = shlex.split(command.replace("\\\n", " "))
    assert argv[:2] == ["urbanpulse", "query"]
    argv = [local.get(a, a) for a in argv[2:]]
    assert main(argv) == 0
    assert Path("ledger.csv").read_text().startswith("time,site,node,duplicates,")
    namespace: dict[str, object] = {}
    for block in _blocks("python"):
        for doc_value, ours in local.items():
            block = block.replace(doc_value, ours)
        exec(compile(block, str(DOC), "exec"), namespace)
    data = namespace["city"]
    assert isinstance(data, CityData)
    data.client.close()  # the doc's `with` closed it; later examples opened it again
    ledger = namespace["ledger"]
    assert isinstance(ledger, pd.DataFrame)
    assert list(ledger.columns)[:2] == ["site", "node"]  # read back from the doc's CSV
    assert str(ledger["restarts"].dtype) == "Int64"
