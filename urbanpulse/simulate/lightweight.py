"""The lightweight mode: wire-contract readings per node, made directly from the models
(no emulated device, no pin), for offline runs and load tests of thousands of nodes.

Readings are what a node's edge agent would send: stamped with the node's clock (clock
faults included), numbered per sensor from 0 in the order they are read, grouped per
node into batches of at most `max_batch` readings ready for `encode_batch`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from urbanpulse.simulate.errors import SimulationError
from urbanpulse.wire import MAX_READINGS_PER_BATCH, Reading, encode_batch

if TYPE_CHECKING:
    from urbanpulse.simulate.simulation import Simulation


@dataclass(frozen=True, slots=True)
class NodeBatch:
    site: str
    node: str
    readings: list[Reading]

    def encode(self) -> bytes:
        return encode_batch(self.site, self.node, self.readings)


class ReadingGenerator:
    """Moves forward through simulated time, window by window, without gaps."""

    def __init__(self, sim: Simulation, max_batch: int = 500) -> None:
        if not 1 <= max_batch <= MAX_READINGS_PER_BATCH:
            raise SimulationError(f"max_batch must be in 1..{MAX_READINGS_PER_BATCH}")
        self._sim = sim
        self._max_batch = max_batch
        self.position = 0.0
        self.count = 0
        self._seq: dict[tuple[str, str, str], int] = {}
        self._nodes = [
            (n.site, n.node, [(s.id, s.kind, sim.output(n.site, n.node, s.id)) for s in n.sensors],
             sim.clock_skew(n.site, n.node))
            for n in sim.nodes
        ]

    def advance(self, until: float) -> list[NodeBatch]:
        """Readings read in [position, until), per node; position becomes `until`."""
        if until < self.position:
            raise SimulationError(f"cannot go back from {self.position} to {until}")
        t0, t1 = self.position, until
        ts_ns = self._sim.timebase.ts_ns
        batches: list[NodeBatch] = []
        for site, node, sensors, skew in self._nodes:
            times: list[np.ndarray] = []
            ids: list[str] = []
            kinds: list[str] = []
            seqs: list[int] = []
            values: list[dict[str, float]] = []
            for sensor_id, kind, output in sensors:
                t, v = output.reports(t0, t1)
                if not v:
                    continue
                n = len(v)
                key = (site, node, sensor_id)
                first = self._seq.get(key, 0)
                self._seq[key] = first + n
                times.append(t)
                ids += [sensor_id] * n
                kinds += [kind] * n
                seqs += range(first, first + n)
                values += v
            if not values:
                continue
            all_t = np.concatenate(times)
            order = np.argsort(all_t, kind="stable").tolist()
            stamps = ts_ns(all_t + skew.array(all_t)).tolist()
            readings = [Reading(ids[i], kinds[i], stamps[i], seqs[i], values[i]) for i in order]
            self.count += len(readings)
            for i in range(0, len(readings), self._max_batch):
                batches.append(NodeBatch(site, node, readings[i : i + self._max_batch]))
        self.position = until
        return batches

    def run(self, until: float, step: float = 3600.0) -> Iterator[NodeBatch]:
        """Batches up to offset `until`, made `step` seconds of simulated time at a time."""
        while self.position < until:
            yield from self.advance(min(until, self.position + step))
