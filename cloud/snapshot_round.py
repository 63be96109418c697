"""Which node snapshot is a worker's last of an epoch, so that the frozen store is flushed
once a round of snapshots rather than at each node's.

A node's snapshot references rows of the frozen store (cloud/frozen_store.py) that must be
on disk before Bytewax has the snapshot. Bytewax 0.21's `stateful_batch` snapshots, at an
epoch's end, every key it woke in that epoch (`on_batch`, `on_notify`, `on_eof`) in one
loop, and hands the snapshots on to its recovery store only after that loop (its
src/operators.rs, as read; tests/cloud/test_flow_frozen_store_flush.py checks the flushes
and the rows on disk, not that ordering). So one flush at the loop's last snapshot puts
every row the loop's snapshots reference on disk before any of them is written. A flush
at each node's snapshot made a transaction whenever deletions or rows had piled up since
the last, several a round on a large process: on the warm city sample at 6,900 nodes the
flushes took 0.83 s of CPU an epoch, against 0.08 flushed once a round (docs/throughput.md,
"Session 29").

The nodes woken since the worker's last snapshots are kept per thread (a Bytewax worker is
a thread; a process may run several): a snapshot whose node is not among them (woken some
way this does not see) is taken for a last one, as is the one that empties them, so a
flush is never left out; at worst one is made early."""

from __future__ import annotations

import threading


class SnapshotRound:
    """The node logics each worker woke and has not snapshotted yet. The logics themselves
    are held, not their ids: one snapshotted and then dropped could free its id for a new
    one."""

    def __init__(self) -> None:
        self._local = threading.local()

    def _woken(self) -> set[object]:
        try:
            woken: set[object] = self._local.woken
        except AttributeError:
            woken = self._local.woken = set()
        return woken

    def woke(self, logic: object) -> None:
        """`logic` was woken: Bytewax snapshots it at this epoch's end."""
        self._woken().add(logic)

    def snapshotted(self, logic: object) -> bool:
        """`logic` is being snapshotted: whether it is the last of its worker's round (or
        one not seen woken), whose snapshot must flush the store."""
        woken = self._woken()
        if logic not in woken:
            return True
        woken.remove(logic)
        return not woken

    def waiting(self) -> int:
        """The logics this thread's worker woke and has not snapshotted yet."""
        return len(self._woken())
