"""How often the processor's cyclic garbage collector runs.

The dataflow keeps every node's state (windows, sequence ranges, detectors: millions of
container objects) and allocates tuples and lists per reading. With CPython's default
thresholds (700, 10, 10) a full collection walks that whole state every hundred thousand
allocations or so: 29 % of the processor's CPU without detection in the pipeline
benchmark, 7.6 % with these thresholds (docs/throughput.md). The hot path creates almost
no reference cycles, so collecting far less often loses nothing but a little memory held
a little longer.
"""

from __future__ import annotations

import gc

# Young objects before a young collection; young collections per middle one; middle per
# full one (CPython 3.11 also waits until a full pass would visit 25 % new objects).
STREAM_THRESHOLDS = (50_000, 20, 100)


def tune_for_streaming() -> tuple[int, int, int]:
    """Set the thresholds for a long-running dataflow process and move what start-up
    allocated (modules, config) out of the collector's reach. Returns the old thresholds."""
    old = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(*STREAM_THRESHOLDS)
    return old
