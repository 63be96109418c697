"""One fixed schedule of the chaos soak (bench/chaos): every kind of fault the soak draws,
overlapping (the broker killed while a node's link is cut, InfluxDB frozen while the
processor restarts, the ingest child killed alone or orphaned, the processor frozen, or
stopped while its link to InfluxDB is cut, a node frozen while the broker is, a node's state
disk full while its link is cut, and a node stopped and started on its full disk), on two
real agents, the real Mosquitto, processor and InfluxDB. Every reading the nodes numbered is
stored once, with the stamp and values it was published with; aggregates, ledger and dead
letters agree. `python -m bench.chaos.soak --seed N --minutes M` draws longer schedules
(also on a cluster of processors, `--processes 2`)."""

from __future__ import annotations

import io
import subprocess
from pathlib import Path

from bench.chaos.plan import Step, kind
from bench.chaos.soak import Soak

SCHEDULE = [Step(at, part, action) for at, action, part in [
    (0.5, "partition", "link-agent-0"),
    (1.0, "fill", "disk-agent-0"),  # nothing acked meanwhile: its outbox cannot grow
    (1.5, "kill", "broker"),
    (3.0, "kill-main", "processor"),  # its ingest child orphaned, to end by itself
    (4.0, "start", "broker"),
    (5.0, "freeze", "influxdb"),
    (6.0, "start", "processor"),
    (6.5, "free", "disk-agent-0"),
    (7.5, "heal", "link-agent-0"),
    (8.5, "kill", "agent-1"),
    (9.5, "thaw", "influxdb"),
    (10.0, "partition", "link-ingest"),
    (11.0, "start", "agent-1"),
    (12.0, "kill", "influxdb"),
    (12.5, "fill", "disk-agent-0"),
    (13.0, "freeze", "processor"),
    (13.5, "term", "agent-0"),  # stopped and started on its full disk (its reserve)
    (14.0, "heal", "link-ingest"),
    (14.5, "start", "agent-0"),
    (15.0, "start", "influxdb"),
    (16.0, "thaw", "processor"),
    (16.5, "free", "disk-agent-0"),
    (17.0, "kill", "ingest"),
    (17.5, "partition", "link-influx"),
    (18.0, "term", "processor"),
    (19.0, "freeze", "agent-0"),
    (20.0, "start", "processor"),
    (21.0, "freeze", "broker"),
    (23.0, "thaw", "agent-0"),
    (24.0, "thaw", "broker"),
    (25.0, "heal", "link-influx"),
    (27.5, "start", "agent-1"),
    (28.5, "start", "processor"),
]]
# SIGTERM cut short by a SIGKILL (a stop timeout): the agent's, then the processor's
SCHEDULE[-2:-2] = [Step(26.0, "agent-1", "term-kill", 0.3), Step(27.0, "processor", "term-kill", 0.5)]


def _can_mount(path: Path) -> bool:
    path.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(path)],
                             capture_output=True, check=False)
    if mounted.returncode == 0:
        subprocess.run(["umount", str(path)], check=True)
    return mounted.returncode == 0


def test_a_fixed_chaos_schedule_loses_doubles_and_alters_nothing(tmp_path: Path) -> None:
    # The full disk is a tmpfs the soak mounts (root only): without, the rest of the schedule.
    disks = 1 if _can_mount(tmp_path / "probe") else 0
    plan = [s for s in SCHEDULE if disks or kind(s.part) != "disk"]
    out = io.StringIO()
    soak = Soak(seed=0, minutes=0.5, agents=2, sensors=1, drain_s=60.0, plan=plan, disks=disks)
    findings = soak.run(tmp_path / "chaos", out=out)
    print(out.getvalue())
    assert findings.clean, out.getvalue()
    assert findings.readings > 500
    assert all(s.witnessed > 0 for s in findings.sensors)
    # Nothing evicted, nothing dropped (what memory holds outlasts these few seconds), and
    # the full disk did refuse commits: the readings were held, then committed.
    assert findings.evicted == {"aq-chaos-0": 0, "aq-chaos-1": 0}
    if disks:
        report = soak.disk_report["disk-agent-0"]
        assert report["filled"] == 2, report
        assert report["commits_refused"] >= 1, report
        assert report["evicted_for_room"] == report["dropped"] == 0, report
