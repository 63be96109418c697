"""The simulated city at its own pace: a city whose size matches the offered rate.

`generate` replays hours of the 23-node city in seconds of the benchmark, so each node sends
tens of messages a second. Here the same stream is cut into slices of `span_s` seconds of
its stamps (the benchmark's duration), each slice's nodes renamed as copies of their own and
its stamps moved back onto the first slice's: every copy sends, within the same `span_s`
seconds of stamps, what its node sent in its slice, at its recorded pace. At `rate`
readings/s the run then offers the same readings and messages as the compressed city, from
`copies` times as many nodes, each sending about once in 30 s.

A copy is a node `<node>-c<n>` of a site `<site>-g<m>`: `per_site` copies of a site's nodes
share one site (and its gateway), so that a relayed run needs a gateway per `per_site`
copies of each site, not per copy (each gateway is a broker user and a connection).
The nodes start without history: their state holds only what the run sends them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

from bench.pipeline.errors import PipelineBenchError
from bench.pipeline.workload import Message, Workload, _summarise, generate_chunks, numbering_of
from urbanpulse.wire import Reading, data_topic, encode_batch

DEFAULT_PER_SITE = 100


@dataclass(frozen=True)
class AtPace:
    workload: Workload
    copies: int  # slices of the compressed stream, so copies of each node
    base_nodes: int  # nodes of the simulated city
    city_nodes: int  # base_nodes * copies: the city's size at this rate
    sites: int  # sites (gateways) the copies use
    span_s: float  # seconds of stamps each copy covers: the run's duration at `rate`
    base_span_s: float  # seconds of stamps of the compressed stream


def copy_ids(site: str, node: str, copy: int, per_site: int) -> tuple[str, str]:
    return f"{site}-g{copy // per_site}", f"{node}-c{copy % per_site}"


def at_pace(readings: int, *, rate: float, per_site: int = DEFAULT_PER_SITE, batch: int = 500,
            seed: int = 1, now: datetime | None = None, live_s: float | None = 1.0) -> AtPace:
    """`readings` readings of the city, sent at `rate` readings/s by nodes at their own pace."""
    if not rate > 0 or per_site < 1:
        raise PipelineBenchError("rate and per_site must be positive")
    chunks = generate_chunks(readings, batch=batch, seed=seed, now=now, live_s=live_s)
    span_ns = round(readings / rate * 1e9)
    first = min(chunk[0].ts_ns for _, _, chunk in chunks)
    last = max(chunk[-1].ts_ns for _, _, chunk in chunks)
    copies = (last - first) // span_ns + 1
    moved: list[tuple[int, Message]] = []
    for site, node, chunk in chunks:
        copy = (chunk[0].ts_ns - first) // span_ns
        shift = copy * span_ns
        new_site, new_node = copy_ids(site, node, copy, per_site)
        readings_moved = [Reading(r.sensor, r.kind, r.ts_ns - shift, r.seq, r.values, r.flags)
                          for r in chunk]
        payload = encode_batch(new_site, new_node, readings_moved,
                               numbering=numbering_of(new_site, new_node))
        moved.append((readings_moved[0].ts_ns,
                      Message(new_site, new_node, data_topic(new_site, new_node), payload, len(chunk))))
    moved.sort(key=lambda tm: tm[0])  # stable: a node's messages keep their order
    workload = _summarise([m for _, m in moved])
    base_nodes = len({(site, node) for site, node, _ in chunks})
    return AtPace(workload, copies, base_nodes, base_nodes * copies,
                  len({m.site for m in workload.messages}), span_ns / 1e9,
                  max((last - first) / 1e9, 1e-9))


def per_node_message_rate(workload: Workload, seconds: float) -> float:
    """Messages a node sends a second over `seconds`, averaged over the nodes that sent."""
    return len(workload.messages) / max(len(workload.nodes), 1) / seconds


def nodes_needed(rate: float, readings_per_node_s: float) -> int:
    """Nodes sending `readings_per_node_s` each that offer `rate` readings/s."""
    return math.ceil(rate / readings_per_node_s)
