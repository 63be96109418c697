"""The pipeline benchmark's city at its own pace (`bench.pipeline.run --at-pace`): the
compressed city's stream cut into slices of the run's duration, each slice's nodes renamed as
copies and its stamps moved onto the first slice's. The same readings, from distinct nodes
sending at their recorded pace. No timing is asserted."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime

from bench.pipeline.atpace import at_pace, copy_ids, per_node_message_rate
from bench.pipeline.workload import generate
from urbanpulse.wire.payload import parse_ts

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)


def test_copies_are_distinct_nodes_sending_the_same_readings_at_their_recorded_pace() -> None:
    rate, readings = 500.0, 3000  # 6 s of the run: about an hour of the compressed city's stamps
    compressed = generate(readings, now=NOW, live_s=1.0)
    city = at_pace(readings, rate=rate, now=NOW, per_site=10)
    w = city.workload

    assert w.readings == compressed.readings
    assert len(w.messages) == len(compressed.messages)
    assert city.span_s == readings / rate
    assert city.copies > 500  # an hour of stamps in slices of 6 s
    assert city.city_nodes == city.base_nodes * city.copies

    # Every (site, node) of the run is a copy of one compressed node, and no two copies of
    # one slice or of two slices share ids; each message's payload names its copy.
    base_nodes = {(m.site, m.node) for m in compressed.messages}
    copies_of: Counter[tuple[str, str]] = Counter()
    for site, node in w.nodes:
        base_site, _, group = site.rpartition("-g")
        base_node, _, copy = node.rpartition("-c")
        assert (base_site, base_node) in base_nodes
        assert copy_ids(base_site, base_node, int(group) * 10 + int(copy), 10) == (site, node)
        copies_of[(base_site, base_node)] += 1
    assert len(w.nodes) == len(set(w.nodes)) > 10 * len(base_nodes)
    for m in w.messages[:200]:
        payload = json.loads(m.payload)
        assert (payload["site"], payload["node"]) == (m.site, m.node)

    # Every stamp within the run's span: what each copy sends, it sends at its node's pace.
    stamps = [parse_ts(r["ts"]) for m in w.messages for r in json.loads(m.payload)["readings"]]
    assert max(stamps) - min(stamps) <= (city.span_s + 1.0) * 1e9

    # Per node and second: the compressed city's nodes send messages many times a second
    # of the run; a copy about as often as its node did in its own time (once in tens of s).
    compressed_rate = per_node_message_rate(compressed, readings / rate)
    paced_rate = per_node_message_rate(w, city.span_s)
    recorded_rate = len(compressed.messages) / len(base_nodes) / city.base_span_s
    assert compressed_rate > 10
    assert paced_rate < 1
    # Over the whole city (the nodes silent in the run included) the offered messages per node
    # and second are the recorded ones.
    city_rate = len(w.messages) / city.city_nodes / city.span_s
    assert 0.8 < city_rate / recorded_rate < 1.25
    per_copy = Counter((m.site, m.node) for m in w.messages)
    assert max(per_copy.values()) <= city.span_s  # never more than one message a second (live_s)
