"""A `FaultMonitor`'s state as the code before session 19 pickled it: its instance dict,
with deques for the rings (the last 15 gaps apart from the 240), every rule's containers
(empty where the field's settings do not use them), and the attributes it kept on the
class (`_held`, `_lead`, ...) only once set. For the tests of monitors loaded from older
snapshots: `as_old(monitor, *names)` is the monitor loaded from that layout, less `names`
(attributes a snapshot older still did not have)."""

from __future__ import annotations

from collections import deque
from typing import Any

from cloud.detect import FaultMonitor

# The attributes the code before set in `__init__`, and those it kept on the class (None or
# False) until set.
INIT = ("kind", "field", "sensor", "spec", "settings", "_last_ts", "_last_seq", "_gaps",
        "_long_gaps", "_longest", "_arrived", "_heard", "_now", "_silent", "_silence_seen",
        "_out_of_range", "_run_start", "_run_value", "_run_count", "_stuck", "_nonzero", "_seen",
        "_zero_start", "_zero_p", "_zero_count", "_zero_fired", "_window", "_candidate",
        "_spike_last", "_cut_start", "_cut_count", "_glitches", "_glitch_fired", "_pair",
        "_tickets", "_pair_fired", "_order", "_span")
ON_CLASS = ("_agent_start", "_lead", "_leads", "_held", "_gaps_held", "_unjudged", "_start_rx",
            "_hb_rx", "_deferred", "_rx_last", "_rx_gaps", "_set_back")


def long_gaps(m: FaultMonitor) -> list[float]:
    """Gaps that the code before's ring of the last 240 could have held for `m`'s: the
    newest 15 as `m` keeps them, the largest of each later span where `m` keeps it, and
    0.0 elsewhere (a gap larger than none to come: never the largest again)."""
    held = min(m._gap_count, 240)
    first = m._gap_count - held
    out = [0.0] * held
    tops = m._tops
    for value, at in zip(tops[::2], tops[1::2], strict=True):
        out[int(at) - first] = value
    newest = list(m._last_gaps)
    k = m._gap_count % len(newest) if newest else 0
    out[held - len(newest):] = newest[k:] + newest[:k]  # oldest first
    return out


def old_layout(m: FaultMonitor) -> dict[str, Any]:
    now = {name: getattr(m, name) for name in FaultMonitor.__slots__}
    s = m.settings
    long_gaps_ = long_gaps(m)
    old: dict[str, Any] = {name: now.get(name) for name in INIT if name != "_gaps"}
    old["_gaps"] = deque(long_gaps_[-15:], maxlen=15)
    old["_long_gaps"] = deque(long_gaps_, maxlen=240)
    old["_window"] = deque(now["_window"] or (), maxlen=s.spike_window or 1)
    old["_glitches"] = deque(now["_glitches"] or ())
    pair = now["_pair"] or ((), ())
    old["_pair"] = (deque(pair[0]), deque(pair[1]))
    for name in ON_CLASS:
        value = now[name]
        if value is not None and value is not False:
            old[name] = value
    for name, maxlen in (("_leads", 4), ("_rx_gaps", 9)):
        if name in old:
            old[name] = deque(old[name], maxlen=maxlen)
    return {name: old[name] for name in (*INIT, *ON_CLASS) if name in old}


def as_old(m: FaultMonitor, *without: str) -> FaultMonitor:
    """`m` as loaded from the code before's layout (`old_layout`), without `without`."""
    state = old_layout(m)
    for name in without:
        state.pop(name, None)
    loaded = FaultMonitor.__new__(FaultMonitor)
    loaded.__setstate__(state)
    return loaded
