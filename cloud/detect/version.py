"""The version of the detector state stored in the dataflow's snapshots, bumped by hand.

A node's anomaly detectors and fault rules (`NodeState.watch` and `.node_watch` in
cloud/logic/node.py) are learnt: their state is pickled in each snapshot with this version,
and a snapshot of another version is dropped unread (the detectors and fault monitors start
learning again: hours to days without anomaly scores, heartbeat intervals and gap
statistics learnt anew) rather than unpickled into code that reads it otherwise. So an
upgrade keeps every learnt detector unless this changes, and it must change whenever a
resumed detector would be wrong:

* the pickled layout changed: a class, an attribute, or the type of a value, of anything
  `watch` and `node_watch` hold (the detectors and their parts, `FaultMonitor`,
  `HeartbeatMonitor`, `FieldWatch`, the `FieldSpec` a monitor keeps); unless the new code
  loads the old layout and reads it as before (a class-level or `__setstate__` default);
* the meaning changed with the same layout: a statistic computed otherwise, a unit, a
  window that now counts readings instead of seconds, a learnt value the code now reads
  differently;
* the settings detectors and fault monitors are made with changed (`profiles.py`,
  `faults.FAULT_SETTINGS`, a field's range in `urbanpulse/wire/kinds.py`, the drift rules'
  `DriftSettings` and `PairDriftSettings` but for what the config sets) and the resumed
  ones must take them: each keeps the settings and range it was made with, pickled with it;
  unless a loaded one takes them itself (`profiles.SUPERSEDED`: an anomaly detector of
  settings no profile makes any more moves to the profile's new ones when loaded).

The city's drift detectors (`CityDrift` in `CityAir`, cloud/logic/domain/city_drift.py)
follow this version too: pickled apart, dropped unread at another.

A comment, a refactoring or a speed-up that keeps both the layout and the meaning needs no
bump. tests/cloud/detect/test_detect_state_version.py makes forgetting a layout or settings
change impossible: it compares the layout pickled after a feed of every kind of sensor (and
the settings) with tests/cloud/detect/state_schema.json, written for this version, and says
what to do (`python -m tests.cloud.detect.state_schema`). A change of meaning it cannot see:
bump by hand. Snapshots taken before the version was explicit carried a fingerprint of the
source (16 hex digits), so the first explicit version dropped their detectors once.

A string: snapshots compare it for equality only.
"""

from __future__ import annotations

STATE_VERSION = "1"
