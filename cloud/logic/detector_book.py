"""A node's anomaly detectors kept out of most of its snapshots.

Once its frozen windows left, a node's detectors are about 60 % of its snapshot bytes
(docs/throughput.md), and Bytewax pickles them whole into every snapshot of the node. Unlike
a frozen window, a detector changes with every value it learns, so there is nothing in it to
write once. But what a detector is at a snapshot is what it was at an earlier one fed the
values it took since, in their order: `AnomalyDetector.update` is all that changes it
(settings narrowed at load aside, below). So with a store (the frozen windows' file,
cloud/frozen_store.py), a node's detectors are written whole, as a checkpoint row, at every
`FrozenStore.detector_every`-th snapshot of the node, and each snapshot in between writes one
row of the values its detectors took since the one before (a log row). The snapshot holds
the ids of the checkpoint and of its log rows (a `DetectorBook`), not the detectors. Resumed,
it loads the checkpoint and feeds the logged values again, in order, the scores discarded
(their events were written when the values first came): the detectors as they were at the
snapshot, bit for bit (tests/cloud/logic/test_detector_book.py).

A checkpoint is written out of turn when the node's detectors are no longer those of the
last one (a sensor's first values made one, a sensor dropped), and at the node's first
snapshot after a resume: a detector may have been narrowed to newer settings as it loaded
(`AnomalyDetector.__setstate__`), after which its values were not learnt with the old ones.
Rows are never changed; those a checkpoint supersedes are let go and deleted as the frozen
windows' are (`NodeState.frozen_snapshot`), once no snapshot Bytewax may resume holds them.
A row missing all the same (a copy of the partitions without the store's files) costs the
node's detectors what they learnt: they start again fresh (logged), as after a detector
version change; no point or aggregate depends on them.
"""

from __future__ import annotations

import logging
import pickle
from array import array
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from cloud.detect import AnomalyDetector, DetectError, make_detector
from cloud.detect.profiles import scored
from cloud.errors import CloudError

if TYPE_CHECKING:
    from cloud.frozen_store import FrozenStore
    from cloud.logic.events import SensorWatch

log = logging.getLogger("urbanpulse.cloud.detector_book")

# (sensor, field): a detector's place in its node's watch
Place = tuple[str, str]
# id(detector) -> (the detector, the stamps and the values it was fed since the last snapshot)
Journal = dict[int, tuple[AnomalyDetector, "array[int]", "array[float]"]]


class DetectorBookError(CloudError):
    """A checkpoint or log row that is not what a book writes (a foreign or damaged file)."""


@dataclass
class DetectorBook:
    """The rows that make a node's detectors: a checkpoint and the log rows written after it,
    in order (pickled with the node's snapshot)."""

    checkpoint: int
    logs: list[int] = field(default_factory=list)

    def refs(self) -> list[int]:
        return [self.checkpoint, *self.logs]


def detectors_of(watch: dict[str, SensorWatch]) -> dict[Place, AnomalyDetector]:
    """The node's detectors by place, in the watch's order."""
    return {(sensor, name): fw.detector
            for sensor, sw in watch.items() for name, fw in sw.fields.items()
            if fw is not None and fw.detector is not None}


def identities(detectors: dict[Place, AnomalyDetector]) -> dict[Place, int]:
    return {place: id(d) for place, d in detectors.items()}


def checkpoint_row(detectors: dict[Place, AnomalyDetector]) -> bytes:
    return pickle.dumps(detectors, protocol=pickle.HIGHEST_PROTOCOL)


def log_row(journal: Journal, places: dict[int, Place]) -> bytes:
    """The values each detector took since the last snapshot, as (sensor, field, stamps,
    values) with the stamps int64 and the values float64, in native byte order (a store is
    read by the machine that wrote it, or one of its cluster)."""
    out = [(*places[key], stamps.tobytes(), values.tobytes())
           for key, (_, stamps, values) in journal.items() if stamps]
    return pickle.dumps(out, protocol=pickle.HIGHEST_PROTOCOL)


def replay(detectors: dict[Place, AnomalyDetector], row: bytes) -> int:
    """Feeds the values of a log row to `detectors` again; how many."""
    entries = pickle.loads(row)
    if not isinstance(entries, list):
        raise DetectorBookError(f"a detector log row holds a {type(entries).__name__}")
    fed = 0
    for sensor, name, stamp_bytes, value_bytes in entries:
        detector = detectors.get((sensor, name))
        if detector is None:
            raise DetectorBookError(f"a detector log row names {sensor}/{name}, which its "
                                    "checkpoint does not hold")
        stamps: array[int] = array("q")
        stamps.frombytes(stamp_bytes)
        values: array[float] = array("d")
        values.frombytes(value_bytes)
        update = detector.update
        for ts, v in zip(stamps, values, strict=True):
            update(ts, v)
        fed += len(stamps)
    return fed


def load(book: DetectorBook, store: FrozenStore) -> dict[Place, AnomalyDetector] | None:
    """The detectors `book` makes, None if one of its rows is missing; DetectorBookError if
    a row is not one a book writes."""
    row = store.get(book.checkpoint)
    if row is None:
        return None
    try:
        detectors = pickle.loads(row)
        if not isinstance(detectors, dict):
            raise DetectorBookError(f"a detector checkpoint row holds a {type(detectors).__name__}")
        for ref in book.logs:
            logged = store.get(ref)
            if logged is None:
                return None
            replay(detectors, logged)
    except (pickle.UnpicklingError, EOFError, AttributeError, ImportError, TypeError,
            ValueError, DetectError) as exc:
        raise DetectorBookError(f"a detector row of the store is damaged: {exc}") from exc
    return detectors


def fresh(kind: str, name: str, sensor: str) -> AnomalyDetector | None:
    """A new detector for a field, as a sensor's first value makes it (`events._make`)."""
    if not scored(kind, name):
        return None
    try:
        return make_detector(kind, name, sensor)
    except DetectError:
        return None


def let_go(book: DetectorBook | None, gone: array[int]) -> None:
    """The rows of `book` are no longer referenced from now on."""
    if book is not None:
        gone.extend(book.refs())

