"""How long a stop waits for the dataflow's last epoch: as long as the epoch visibly moves
on, up to a cap (`flow.stop_drain_s`), and no longer than STALL_S once nothing moves.

A stop ends the journal source, and Bytewax then ends the run the clean way: it calls
`on_eof` on every key's logic, so the last epoch snapshots the state of every node the
process holds, not only of those that had a message in it (Bytewax 0.21's
`stateful_batch`: every key the EOF woke is snapshotted at the epoch's close). Its time
grows with the whole state (gigabytes to pickle for a city of 50,000 nodes after 6 hours,
docs/throughput.md). Interrupting it is safe for the data (the epoch is not committed,
and the journal holds its records) but Bytewax reports the interrupted call with a panic
and a backtrace; so the stop waits for it while it progresses. What the wait does not
cover is a last epoch that stands still: InfluxDB down or refusing (the sink's writes wait
for it), a process of a cluster whose others go on.

The epoch moves on while its states are snapshotted (EpochProgress, bumped by the dataflow's
logics and its InfluxDB writer) and while Bytewax writes the snapshots to the recovery
store (`store_marker`), once its input has ended."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Hashable
from enum import Enum
from pathlib import Path

STALL_S = 3.0  # nothing of the last epoch moved for so long: stop without it
POLL_S = 0.25  # how often the wait looks at the progress


class EpochProgress:
    """Counts what makes up a last epoch as the dataflow does it: the end of its input
    reaching the node step (Bytewax's `on_eof`), state snapshots taken, InfluxDB writes done.
    Bumped from the dataflow's threads (a count two workers bump at once may lose one: it
    only has to change), read by the stop's grace thread.

    Only what comes once the input has ended is the last epoch's: a process of a cluster
    stopped alone goes on taking part in the others' epochs (its snapshots, its writes, the
    store they share), which must not hold its stop, and Bytewax ends a step's input only
    once every process's source has ended."""

    __slots__ = ("count", "input_ended")

    def __init__(self) -> None:
        self.count = 0
        self.input_ended = False

    def end_of_input(self) -> None:
        self.input_ended = True
        self.count += 1

    def tick(self) -> None:
        self.count += 1

    def moves(self, store: Path | None) -> Hashable:
        """What changes as the dataflow goes on, whether its input ended or not: the wait of
        a stop by abort (cloud/cli.py) for an epoch end under way, before the journal source
        is asked for its next batch and raises AbortExecution."""
        return self.count, store_marker(store)

    def marker(self, store: Path | None) -> Hashable:
        """What changes as the last epoch moves on (None until the input has ended), with
        the recovery store's files as Bytewax writes the snapshots (`store_marker`)."""
        return (self.count, store_marker(store)) if self.input_ended else None


class DrainEnd(Enum):
    STALLED = "stalled"  # nothing moved for the stall time
    CAPPED = "capped"  # still moving at the cap


def store_marker(directory: Path | None) -> tuple[int, int]:
    """What changes as Bytewax writes a recovery store's snapshots: its files' total size and
    newest mtime (the SQLite files and their journals); (0, 0) without one."""
    size = newest = 0
    if directory is None:
        return size, newest
    try:
        with os.scandir(directory) as entries:
            for entry in entries:
                st = entry.stat()
                size += st.st_size
                newest = max(newest, st.st_mtime_ns)
    except OSError:  # a file gone between the listing and its stat: looked at again next time
        pass
    return size, newest


def wait_for_last_epoch(ended: Callable[[float], bool], marker: Callable[[], Hashable],
                        cap_s: float, stall_s: float = STALL_S,
                        monotonic: Callable[[], float] = time.monotonic,
                        poll_s: float = POLL_S) -> DrainEnd | None:
    """Waits until `ended(timeout)` says the run ended (None), `marker()` stayed the same
    for `stall_s` (STALLED), or `cap_s` passed since the call (CAPPED), whichever comes first."""
    start = moved = monotonic()
    seen = marker()
    while True:
        now = monotonic()
        mark = marker()
        if mark != seen:
            seen, moved = mark, now
        if now >= start + cap_s:
            return DrainEnd.CAPPED
        if now >= moved + stall_s:
            return DrainEnd.STALLED
        if ended(min(poll_s, start + cap_s - now, moved + stall_s - now)):
            return None
