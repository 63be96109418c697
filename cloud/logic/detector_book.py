"""A node's anomaly detectors kept out of most of its snapshots.

Once its frozen windows left, a node's detectors are about 60 % of its snapshot bytes
(docs/throughput.md), and Bytewax pickles them whole into every snapshot of the node. Unlike
a frozen window, a detector changes with every value it learns, so there is nothing in it to
write once. But what a detector is at a snapshot is what it was at an earlier point fed the
values it took since, in their order: `AnomalyDetector.update` is all that changes it
(settings narrowed at load aside, below). So with a store (the frozen windows' file,
cloud/frozen_store.py), a node's detectors are written whole as a checkpoint row about every
`FrozenStore.detector_every` snapshots of the node, and each snapshot holds the checkpoint's
id and the values its detectors took since it (a log per snapshot, 16 bytes a value, in the
snapshot itself: a `DetectorBook`), not the detectors. Resumed, it loads the checkpoint and
feeds the logged values again, in order, the scores discarded (their events were written
when the values first came): the detectors as they were at the snapshot, bit for bit
(tests/cloud/logic/test_detector_book.py).

A checkpoint is decided at a snapshot and written at the node's next record, before the
record is processed: so its row is among those the store writes in one transaction at the
first snapshot of the epoch (`NodeState.frozen_snapshot`), not one transaction per node at
the epoch's end. Each node's checkpoints fall at a place of their own in the cycle
(`NodeState._book_phase`), so that a process's nodes, all touched at every epoch of a city,
do not write theirs at the same epoch. One is due early when the logs reach a quarter of the
checkpoint's bytes (a backlog's values: a resume replays them all), and when the node has a
detector the checkpoint does not hold (a sensor's first values): until the next checkpoint
that one is pickled in the snapshots as before. A resumed node goes on with the book it
resumed: a detector loaded from an older version may be narrowed to newer settings as it
loads (`AnomalyDetector.__setstate__`), and every resume of the same checkpoint narrows it at
the same point, before its logs. Exactness holds within one code version: a resume replays
the logs with the running code's `update`.

Checkpoint rows are never changed; one a newer checkpoint supersedes is let go and deleted as
the frozen windows' rows are (`NodeState.frozen_snapshot`), once no snapshot Bytewax may
resume holds it. A row missing all the same (a copy of the partitions without the store's
files) costs the node's detectors what they learnt: they start again fresh (logged), as
after a detector version change; no point or aggregate depends on them.
"""

from __future__ import annotations

import pickle
from array import array
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from cloud.detect import AnomalyDetector
from cloud.errors import CloudError
from cloud.frozen_store import FrozenStore

if TYPE_CHECKING:
    from cloud.logic.events import SensorWatch

# (sensor, field): a detector's place in its node's watch
Place = tuple[str, str]
# id(detector) -> (the detector, the stamps and the values it was fed since the last snapshot)
Journal = dict[int, tuple[AnomalyDetector, "array[int]", "array[float]"]]


class DetectorBookError(CloudError):
    """A checkpoint or log row that is not what a book writes (a foreign or damaged file)."""


@dataclass
class DetectorBook:
    """What makes a node's detectors, pickled with the node's snapshot: the checkpoint row
    (its id and size) and the logs of the values they took since, one per snapshot."""

    checkpoint: int
    size: int
    logs: list[bytes] = field(default_factory=list)

    def logged(self) -> int:
        return sum(len(b) for b in self.logs)


def detectors_of(watch: dict[str, SensorWatch]) -> dict[Place, AnomalyDetector]:
    """The node's detectors by place, in the watch's order."""
    return {(sensor, name): fw.detector
            for sensor, sw in watch.items() for name, fw in sw.fields.items()
            if fw is not None and fw.detector is not None}


def checkpoint_row(detectors: dict[Place, AnomalyDetector]) -> bytes:
    return pickle.dumps(detectors, protocol=pickle.HIGHEST_PROTOCOL)


def log_of(journal: Journal, checkpointed: dict[Place, AnomalyDetector]) -> bytes | None:
    """The values the checkpoint's detectors took since the last snapshot, as (sensor,
    field, stamps, values) with the stamps int64 and the values float64 in native byte order
    (a snapshot is resumed by the machine that took it, or one of its cluster); None if they
    took none. A detector the checkpoint does not hold is pickled whole: not logged."""
    places = {id(d): place for place, d in checkpointed.items()}
    out = []
    for key, (detector, stamps, values) in journal.items():
        place = places.get(key)
        if stamps and place is not None and checkpointed[place] is detector:
            out.append((*place, stamps.tobytes(), values.tobytes()))
    return pickle.dumps(out, protocol=pickle.HIGHEST_PROTOCOL) if out else None


def replay(detectors: dict[Place, AnomalyDetector], logged: bytes) -> None:
    """Feeds the values of a log to `detectors` again."""
    entries = pickle.loads(logged)
    if not isinstance(entries, list):
        raise DetectorBookError(f"a detector log holds a {type(entries).__name__}")
    for sensor, name, stamp_bytes, value_bytes in entries:
        detector = detectors.get((sensor, name))
        if detector is None:
            raise DetectorBookError(f"a detector log names {sensor}/{name}, which its "
                                    "checkpoint does not hold")
        stamps: array[int] = array("q")
        stamps.frombytes(stamp_bytes)
        values: array[float] = array("d")
        values.frombytes(value_bytes)
        update = detector.update
        for ts, v in zip(stamps, values, strict=True):
            update(ts, v)


def load(book: DetectorBook, store: FrozenStore) -> dict[Place, AnomalyDetector] | None:
    """The detectors `book` makes, None if its checkpoint row is missing; DetectorBookError
    if the row or a log is not one a book writes. A store that cannot be read raises its
    FrozenStoreError (as for a frozen window: the processor stops, and a restart reads
    again), rather than costing the node what its detectors learnt."""
    row = store.get(book.checkpoint)
    if row is None:
        return None
    try:
        detectors = pickle.loads(row)
        if not isinstance(detectors, dict) or not all(
                isinstance(d, AnomalyDetector) for d in detectors.values()):
            raise DetectorBookError(f"a detector checkpoint row holds a {type(detectors).__name__}"
                                    " that is not detectors by place")
        for logged in book.logs:
            replay(detectors, logged)
    except DetectorBookError:
        raise
    except Exception as exc:  # a damaged row: whatever unpickling or replaying it raises
        raise DetectorBookError(f"the detectors' checkpoint {book.checkpoint} or a log of it "
                                f"could not be read: {exc!r}") from exc
    return detectors


def let_go(book: DetectorBook | None, gone: array[int]) -> None:
    """The checkpoint row of `book` is no longer referenced from now on."""
    if book is not None:
        gone.append(book.checkpoint)

