"""docs/analyst-queries.md's examples keep apart the nodes of two sites that share a node id.

Node ids are unique within a site only (docs/edge-config.md), and the shipped Hanoi city
repeats them: every intersection's node is `cabinet`. The doc's per-node totals grouped by
`node` alone, which on the demo's data (real pipeline output) summed the four
intersections into one `cabinet` row. Here the doc's example runs as written over two
sites' `cabinet` nodes, stored by the processor's own code, in a stretch of time of their
own (other tests' data share the database).
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from cloud.logic.node import NodeState
from cloud.logic.records import NodeData, Point
from cloud.query import CityData
from urbanpulse.clock import to_epoch_ns
from urbanpulse.influx_http import InfluxHTTP
from urbanpulse.stack import StackInfo
from urbanpulse.wire import Reading

from .conftest import write_points
from .scratch_influx import HORIZON_NS

pytestmark = pytest.mark.stack
DOC = Path(__file__).resolve().parents[3] / "docs" / "analyst-queries.md"


def _example(marker: str) -> str:
    (block,) = [b for b in re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)
                if marker in b]
    return block


def test_per_node_totals_of_the_doc_keep_two_sites_cabinets_apart(db_ready: StackInfo,
                                                                   reader: InfluxHTTP) -> None:
    run = uuid.uuid4().hex[:8]
    # 20 days back (within the raw policy's 30), at a minute of this run's own
    start = (datetime.now(UTC) - timedelta(days=20)).replace(second=0, microsecond=0)
    start += timedelta(minutes=int(run, 16) % 600)
    end = start + timedelta(minutes=1)
    points: list[Point] = []
    for site, vehicles in ((f"ids-{run}-a", 14.0), (f"ids-{run}-b", 20.0)):
        t = to_epoch_ns(start) + 10**9
        lane = Reading("north-in", "traffic.loop", t, 1,
                       {"count": vehicles, "interval_s": 60.0, "occupancy_pct": 20.0})
        points += NodeState(HORIZON_NS, detect=False).process(
            NodeData(f"{site}/cabinet", site, "cabinet", t + 10**9, [lane]))
    write_points(db_ready, points)
    namespace: dict[str, object] = {"city": CityData(reader, db_ready.database), "start": start,
                                    "end": end, "pd": pd}
    exec(compile(_example("iter_readings("), str(DOC), "exec"), namespace)
    totals = namespace["totals"]
    assert isinstance(totals, pd.Series)
    assert totals.to_dict() == {(f"ids-{run}-a", "cabinet"): 14.0, (f"ids-{run}-b", "cabinet"): 20.0}
