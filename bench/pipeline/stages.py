"""`python -m bench.pipeline.stages`: the processor's stages timed one by one in this process,
on the benchmark's own workload, with no broker, database or Bytewax in the way.

It calls the same functions the dataflow calls (cloud.logic and cloud.journal), in the same
order per node, and reports CPU microseconds per reading for each, so that the end-to-end
numbers can be split without sampling noise.
"""

from __future__ import annotations

import argparse
import gc
import json
import pickle
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

import orjson

from bench.pipeline.atpace import at_pace
from bench.pipeline.workload import Workload, generate, relayed, schedule
from cloud.flow import READ_BATCH
from cloud.gc_policy import tune_for_streaming
from cloud.journal import Journal, JournalRecord
from cloud.logic.domain.hospital import SiteUpdate
from cloud.logic.domain.hospital_site import HospitalSite
from cloud.logic.node import NodeState
from cloud.logic.records import NodeData, Point, Record, decode_record, expand_relays
from urbanpulse.wire import KINDS

HORIZON_NS = 6 * 3600 * 1_000_000_000
RECEIVED_STEP_NS = 10_000_000


def _timed(fn: Callable[[], object]) -> float:
    start = time.process_time()
    fn()
    return time.process_time() - start


def _records(workload: Workload, relay_s: float | None = None,
             rate: float = 2000.0) -> list[JournalRecord]:
    """The journal's records: each node message, or with `relay_s` each site's gateway's
    relays (`workload.relayed`, the messages sent at `rate` readings/s)."""
    # Received "now" is just after the last reading, as when a node keeps up.
    received = workload.last_ts_ns
    messages = workload.messages
    if relay_s is not None:
        messages = [m for _, m in relayed(schedule(messages, rate), relay_s)]
    return [JournalRecord("i0", i + 1, received + i * RECEIVED_STEP_NS, m.topic, m.payload)
            for i, m in enumerate(messages)]


def _kind_of(point: Point) -> str:
    """A point's retention policy and measurement, the readings' own measurements as one."""
    rp, text = point
    name = text[:text.index(",")]
    return f"{rp or 'raw'}.{'<reading>' if name in _READING_MEASUREMENTS else name}"


_READING_MEASUREMENTS = frozenset(k.measurement for k in KINDS.values())


def measure(workload: Workload, relay_s: float | None = None, rate: float = 2000.0) -> dict[str, float]:
    """CPU µs per reading of each stage (per message for the journal). With `relay_s`, the
    journal holds the sites' relays and the stages see their messages (`expand_relays`)."""
    n = workload.readings
    journaled = _records(workload, relay_s, rate)
    out: dict[str, float] = {}
    expanded: list[Sequence[Record]] = []
    out["expand_relays"] = _timed(lambda: expanded.extend(
        expand_relays(journaled[i:i + READ_BATCH]) for i in range(0, len(journaled), READ_BATCH))) / n * 1e6
    records = [r for batch in expanded for r in batch if isinstance(r, JournalRecord)]
    out["json.loads only"] = _timed(lambda: [json.loads(r.payload) for r in records]) / n * 1e6
    out["orjson.loads only (decode_record's parser)"] = _timed(
        lambda: [orjson.loads(r.payload) for r in records]) / n * 1e6
    decoded: list[tuple[NodeData | None, list[Point]]] = []
    out["decode_record"] = _timed(lambda: decoded.extend(decode_record(r, 4096) for r in records)) / n * 1e6
    data = [d for d, _ in decoded if d is not None]
    for detect in (True, False):
        states: dict[str, NodeState] = {d.key: NodeState(HORIZON_NS, detect) for d in data}
        points: list[Point] = []
        updates: list[list[SiteUpdate]] = []  # per message

        def run(states: dict[str, NodeState] = states, points: list[Point] = points,
                updates: list[list[SiteUpdate]] = updates) -> None:
            for d in data:
                state = states[d.key]
                points.extend(state.process(d))
                updates.append(state.take_site_updates())
                state.take_alerts()

        label = "on" if detect else "off"
        out[f"NodeState.process, detect {label}"] = _timed(run) / n * 1e6
        out[f"points per reading, detect {label}"] = len(points) / n
        if not detect:
            for what, count in sorted(Counter(_kind_of(p) for p in points).items()):
                out[f"  of which {what}"] = count / n
        def snapshot_all(states: dict[str, NodeState] = states) -> None:
            for s in states.values():
                pickle.dumps(s, protocol=pickle.HIGHEST_PROTOCOL)

        snap = _timed(snapshot_all)
        out[f"one snapshot of every node, detect {label} (ms, not µs)"] = snap * 1e3
        if not detect:
            sites: dict[str, HospitalSite] = {}

            def site_step(updates: list[list[SiteUpdate]] = updates,
                          sites: dict[str, HospitalSite] = sites) -> None:
                # one call per site and message (the dataflow batches several messages)
                for message in updates:
                    by_site: dict[str, list[SiteUpdate]] = {}
                    for u in message:
                        by_site.setdefault(u.site, []).append(u)
                    for site, batch in by_site.items():
                        state = sites.get(site) or sites.setdefault(site, HospitalSite(HORIZON_NS))
                        state.process(site, batch)

            out["HospitalSite.process (per reading of the whole city)"] = _timed(site_step) / n * 1e6
            lines = [ln for _, ln in points]

            def bodies(lines: list[str] = lines) -> None:
                for i in range(0, len(lines), 5000):
                    "\n".join(lines[i:i + 5000]).encode()

            out["sink body join+encode (per point)"] = _timed(bodies) / len(lines) * 1e6
    out["detection (process on - off)"] = (out["NodeState.process, detect on"]
                                           - out["NodeState.process, detect off"])
    streaming = gc.get_threshold()
    gc.set_threshold(700, 10, 10)
    states = {d.key: NodeState(HORIZON_NS, False) for d in data}
    out["NodeState.process, detect off, CPython's default GC thresholds"] = _timed(
        lambda: [states[d.key].process(d) for d in data]) / n * 1e6
    gc.set_threshold(*streaming)
    with tempfile.TemporaryDirectory() as tmp:
        journal = Journal(Path(tmp) / "j.sqlite3", "i0").open()
        msgs = [(r.topic, r.payload) for r in journaled]
        wall = time.perf_counter()
        cpu = _timed(lambda: [journal.append(msgs[i:i + 10], 0) for i in range(0, len(msgs), 10)])
        wall = time.perf_counter() - wall
        journal.close()
    out["Journal.append, 10 messages a commit (CPU µs per reading)"] = cpu / n * 1e6
    out["Journal.append, 10 messages a commit (wall ms per commit)"] = wall / max(len(msgs) / 10, 1) * 1e3
    return out


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.pipeline.stages", description=__doc__)
    p.add_argument("--readings", type=int, default=200_000)
    p.add_argument("--batch", type=int, default=500, help="readings a message (at most, with --live)")
    p.add_argument("--live", type=float, metavar="SECONDS",
                   help="cut messages as a live node does: the readings stamped within SECONDS "
                        "of the first (the agent's outbox.batch_max_delay_s, 1 by default)")
    p.add_argument("--relay", type=float, metavar="SECONDS",
                   help="journal each site's node messages due in each SECONDS as one relay of its "
                        "gateway (as `bench.pipeline.run --relay`), expanded as the processor does")
    p.add_argument("--rate", type=float, default=2000.0,
                   help="with --relay or --at-pace: the readings/s the messages are due at")
    p.add_argument("--at-pace", action="store_true",
                   help="the city at its own pace at --rate (bench.pipeline.atpace): as many nodes "
                        "as the rate needs, each new, with a message or a few")
    args = p.parse_args(argv)
    workload = (at_pace(args.readings, rate=args.rate, batch=args.batch, live_s=args.live).workload
                if args.at_pace else generate(args.readings, batch=args.batch, live_s=args.live))
    tune_for_streaming()  # as `cloud run` does
    print(f"{workload.readings} readings, {len(workload.messages)} messages "
          f"({workload.readings / len(workload.messages):.1f} readings a message), "
          f"{len(workload.nodes)} nodes")
    for name, value in measure(workload, args.relay, args.rate).items():
        print(f"{value:10.2f}  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
