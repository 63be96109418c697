"""`urbanpulse cloud run` whose last epoch at a stop takes long, as a processor's with a
large state: Bytewax ends a drained run by calling `on_eof` on every key's logic and then
snapshots every key, so the last epoch pickles the state of every node the process holds.
Here each node's snapshot in that epoch first waits DELAY seconds: a stand-in for the
states of tens of thousands of nodes, which a test cannot build in its seconds. Prints
`slow-last-epoch: N nodes` once the node step holds NODES of them, and
`slow-last-epoch: on_eof` at each call of a node's `on_eof`.

    python -m tests.cloud.slow_last_epoch DELAY NODES run --config FILE ..."""

from __future__ import annotations

import sys
import time
from typing import Any

from cloud import flow
from cloud.cli import main


def slow_last_epoch(delay_s: float, nodes: int) -> None:
    logics: set[int] = set()
    on_batch, on_eof, snapshot = flow.NodeLogic.on_batch, flow.NodeLogic.on_eof, flow.NodeLogic.snapshot

    def counted_on_batch(self: flow.NodeLogic, values: list[Any]) -> tuple[list[Any], bool]:
        logics.add(id(self))
        if len(logics) == nodes:
            print(f"slow-last-epoch: {nodes} nodes", flush=True)
        return on_batch(self, values)

    def ending_on_eof(self: flow.NodeLogic) -> tuple[list[Any], bool]:
        self.ending = True  # type: ignore[attr-defined]
        print("slow-last-epoch: on_eof", flush=True)
        return on_eof(self)

    def slow_snapshot(self: flow.NodeLogic) -> bytes:
        if getattr(self, "ending", False):
            time.sleep(delay_s)  # stands for a large state's pickling, not a synchronisation
        return snapshot(self)

    flow.NodeLogic.on_batch = counted_on_batch  # type: ignore[method-assign]
    flow.NodeLogic.on_eof = ending_on_eof  # type: ignore[method-assign]
    flow.NodeLogic.snapshot = slow_snapshot  # type: ignore[method-assign]


if __name__ == "__main__":
    slow_last_epoch(float(sys.argv[1]), int(sys.argv[2]))
    sys.exit(main(sys.argv[3:]))
