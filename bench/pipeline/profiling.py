"""Where the processor's CPU goes, from a py-spy profile (`py-spy record --format raw`:
one line per distinct stack, frames joined by ';', then the sample count)."""

from __future__ import annotations

import re
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

# The first listed marker found in a stack (innermost first) names its stage.
STAGES: tuple[tuple[str, str], ...] = (
    ("SensorWatch.check", "detect (events.SensorWatch.check)"),
    ("SensorRollup.add", "rollups (rollup.SensorRollup.add)"),
    ("DomainNode.process", "domain (domain.node.DomainNode.process)"),
    ("SiteLogic.on_batch", "hospital site state"),
    ("NodeState.process", "node state, rest (ledger, seqs, raw lines)"),
    ("NodeLogic.snapshot", "snapshots (pickle of NodeState)"),
    ("SiteLogic.snapshot", "snapshots (pickle of NodeState)"),
    ("decode_record", "decode (records.decode_record)"),
    ("InfluxPartition.write_batch", "sink (InfluxDB writes)"),
    ("AlertPartition.write_batch", "alerts (MQTT publish)"),
    ("JournalPartition.next_batch", "source (journal read)"),
    ("Journal.append", "ingest: journal commit"),
    ("_on_message", "ingest: MQTT receive"),
    ("Ingest._commit_loop", "ingest: acks"),
    ("_thread_main", "MQTT network threads (paho)"),
    ("loop_forever", "MQTT network threads (paho)"),
)
_WAITS = {"Condition.wait", "Event.wait", "sleep", "select"}
_FRAME = re.compile(r"^(?P<func>.*?) \((?P<where>[^()]*)\)$")


@dataclass
class Profile:
    samples: int
    stages: Counter[str]
    self_time: Counter[str]
    inclusive: Counter[str]


def _name(frame: str) -> str:
    m = _FRAME.match(frame)
    if not m:
        return frame
    where = m["where"].rsplit(":", 1)[0]
    return f"{m['func']} ({where})"


def parse(path: Path) -> Profile:
    stages: Counter[str] = Counter()
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = [_name(f) for f in stack.split(";")]
        self_time[frames[-1]] += n
        for f in set(frames):
            inclusive[f] += n
        stage = "other"
        if frames[-1].split(" ")[0] in _WAITS:
            stage = "waiting (py-spy counted a thread blocked in Python)"
            frames = []
        for frame in reversed(frames):
            hit = next((label for marker, label in STAGES if frame.startswith(marker + " ")), None)
            if hit:
                stage = hit
                break
        stages[stage] += n
    return Profile(total, stages, self_time, inclusive)


def summary(profile: Profile, top: int = 25) -> str:
    def pct(n: int) -> str:
        return f"{100 * n / max(profile.samples, 1):5.1f} %"

    out = [f"{profile.samples} samples (active threads only)", "", "stage:"]
    out += [f"  {pct(n)}  {stage}" for stage, n in profile.stages.most_common()]
    out += ["", "self time:"]
    out += [f"  {pct(n)}  {f}" for f, n in profile.self_time.most_common(top)]
    out += ["", "inclusive:"]
    out += [f"  {pct(n)}  {f}" for f, n in profile.inclusive.most_common(top)]
    return "\n".join(out)


def main(argv: list[str]) -> int:
    for arg in argv:
        print(f"== {arg}")
        print(summary(parse(Path(arg))))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
