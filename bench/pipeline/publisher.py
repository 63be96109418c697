"""One load-generating process: publishes its share of the scheduled messages at QoS1, one
MQTT connection per node (each node has its own credentials and may publish only on its own
topics), never more than `window` unacknowledged messages per connection (packet ids are
16 bits), and appends its progress to a file the coordinator reads.

`python -m bench.pipeline.publisher SPEC.json`; the spec names the broker, the nodes'
credentials, the workload file, the start time (time.monotonic(), shared by every process
of the host) and the window.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.pipeline.errors import PipelineBenchError
from bench.pipeline.workload import load
from urbanpulse.mqtt import close_client, connect_and_wait, make_client
from urbanpulse.stack import MqttCredentials

if TYPE_CHECKING:
    import paho.mqtt.client as paho

PROGRESS_EVERY_S = 0.05
PACE_SLEEP_MAX_S = 0.02


@dataclass
class Progress:
    sent_msgs: int = 0
    sent_readings: int = 0
    acked_msgs: int = 0
    acked_readings: int = 0


@dataclass
class Connection:
    client: paho.Client
    inflight: dict[int, int] = field(default_factory=dict)  # mid -> readings
    early: set[int] = field(default_factory=set)  # acked before publish() returned its mid


class Publisher:
    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.window = int(spec["window"])
        self.progress = Progress()
        self.cond = threading.Condition()
        self.conns: dict[str, Connection] = {}

    def _on_publish(self, user: str) -> Any:
        def on_publish(client: Any, userdata: Any, mid: int, reason: Any, props: Any) -> None:
            with self.cond:
                conn = self.conns[user]
                n = conn.inflight.pop(mid, None)
                if n is None:
                    conn.early.add(mid)
                    return
                self.progress.acked_msgs += 1
                self.progress.acked_readings += n
                self.cond.notify_all()
        return on_publish

    def connect(self) -> None:
        broker = self.spec["broker"]
        for user, password_file in self.spec["nodes"].items():
            creds = MqttCredentials(broker["host"], broker["port"], Path(broker["ca_file"]), user,
                                    Path(password_file))
            client = make_client(f"bench-pub-{user}", creds, clean_start=True)
            # paho keeps its default of 20 messages on the wire; the rest of the window waits
            # in paho's queue, already numbered.
            client.on_publish = self._on_publish(user)
            self.conns[user] = Connection(client)
            connect_and_wait(client)

    def _publish(self, user: str, topic: str, payload: bytes, readings: int, deadline: float) -> None:
        conn = self.conns[user]
        with self.cond:
            while len(conn.inflight) >= self.window:
                if time.monotonic() > deadline:
                    raise PipelineBenchError(f"{user}: window full past the deadline")
                self.cond.wait(0.1)
        info = conn.client.publish(topic, payload, qos=1)
        if info.rc != 0:
            raise PipelineBenchError(f"{user}: publish failed with rc {info.rc}")
        with self.cond:
            self.progress.sent_msgs += 1
            self.progress.sent_readings += readings
            if info.mid in conn.early:
                conn.early.discard(info.mid)
                self.progress.acked_msgs += 1
                self.progress.acked_readings += readings
            else:
                conn.inflight[info.mid] = readings

    def run(self, progress_path: Path) -> Progress:
        scheduled = load(Path(self.spec["workload"]))
        t0 = float(self.spec["start_at"])
        deadline = t0 + float(self.spec["deadline_s"])
        total = sum(m.readings for _, m in scheduled)
        with progress_path.open("a") as out:
            next_report = 0.0

            def report(now: float) -> None:
                p = self.progress
                out.write(f"{now:.4f} {p.sent_readings} {p.acked_readings}\n")
                out.flush()

            for offset, m in scheduled:
                while True:
                    now = time.monotonic()
                    if now >= next_report:
                        report(now)
                        next_report = now + PROGRESS_EVERY_S
                    wait = t0 + offset - now
                    if wait <= 0:
                        break
                    time.sleep(min(wait, PACE_SLEEP_MAX_S))
                if now > deadline:
                    raise PipelineBenchError("publishing did not finish before the deadline")
                self._publish(m.site + "." + m.node, m.topic, m.payload, m.readings, deadline)
            while self.progress.acked_readings < total:
                now = time.monotonic()
                if now > deadline:
                    raise PipelineBenchError("the broker did not acknowledge everything in time")
                report(now)
                with self.cond:
                    self.cond.wait(PROGRESS_EVERY_S)
            report(time.monotonic())
            out.write("done\n")
        return self.progress

    def close(self) -> None:
        for conn in self.conns.values():
            close_client(conn.client)


def main(argv: list[str]) -> int:
    spec = json.loads(Path(argv[0]).read_text())
    pub = Publisher(spec)
    try:
        pub.connect()
        Path(spec["ready"]).write_text("ready\n")
        pub.run(Path(spec["progress"]))
    except PipelineBenchError as exc:
        print(f"publisher: {exc}", file=sys.stderr)
        return 1
    finally:
        pub.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
