"""The publisher's live pass beside a large backlog: after a restart, its cursor is at the
outbox's start, and the rows it looks for (committed in the last live_window_s) come after
the whole backlog. The node's publisher runs on the session's real Mosquitto with delivery
= "broker"; the work SQLite does for each look is counted in virtual-machine steps (its
progress handler), which the machine's load does not change."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from edge.config import load_config
from edge.drivers.base import Sample
from edge.mqtt_client import make_client as make_node_client
from edge.outbox import Outbox, Waiting
from edge.publisher import Publisher
from tests.conftest import Collector
from urbanpulse.clock import FakeClock, to_epoch_ns
from urbanpulse.testing import wait_for

SITE = "hn-backlogscan"
BACKLOG = 100_000


class CountingOutbox(Outbox):
    """An outbox that counts the SQLite steps of each live-pass look (`waiting`)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.looks: list[int] = []
        self._looks_lock = threading.Lock()

    def waiting(self, after_id: int, created_since_ns: int) -> Waiting:
        steps = [0]

        def count() -> int:
            steps[0] += 1
            return 0

        db = self._db()
        db.set_progress_handler(count, 100)
        try:
            return super().waiting(after_id, created_since_ns)
        finally:
            db.set_progress_handler(None, 100)
            with self._looks_lock:
                self.looks.append(steps[0])


def test_the_live_pass_does_not_scan_the_backlog_at_every_pump_after_a_restart(
        make_node_config: Callable[..., Path], collector: Callable[[str, str], Collector],
        tmp_path: Path) -> None:
    """A node restarted with 100,000 rows of backlog (two hours offline) and no reading
    since (its sensors event-driven, or failing). Before, every pump (ten a second) counted
    the rows after the live pass's cursor, still at 0, that were committed in the last
    live_window_s: a scan of the whole backlog each time, for as long as no live batch was
    sent (11 ms a pump for 200,000 rows on a desktop CPU: most of a Raspberry Pi's core at
    the 2,000,000 rows of max_rows). Now the first look moves the cursor past the rows
    before the first live one; the next looks read only what came since. The first live
    reading still goes at once."""
    node = "aq-backlogscan"
    path = make_node_config(SITE, node, '[[sensors]]\nid = "pm-1"\ndriver = "sds011"\n'
                            'port = "/dev/null"\n', backlog_batches_per_s=0.01)
    config = load_config(path)
    seen = collector(SITE, node)
    clock = FakeClock(datetime(2026, 11, 29, 6, 0, tzinfo=UTC))
    outbox = CountingOutbox(tmp_path / "outbox.sqlite3").open()
    old = to_epoch_ns(clock.now() - timedelta(hours=2))
    sample = Sample("pm-1", "air.pm", {"pm25": 12.0, "pm10": 20.0}, clock.now())
    for i in range(0, BACKLOG, 10_000):
        outbox.append([sample] * 10_000, old + i)
    publisher = Publisher(config, outbox, lambda: make_node_client(f"edge-{SITE}.{node}",
                                                                   config.mqtt),
                          clock, lambda: {})
    publisher.start()
    try:
        wait_for(lambda: len(outbox.looks) >= 20, 30, "twenty pumps")
        with outbox._looks_lock:
            first, later = outbox.looks[0], outbox.looks[1:]
        assert first > 1000, first  # the one scan: 100,000 rows
        assert max(later) * 100 < first, (first, later)
        outbox.append([Sample("pm-1", "air.pm", {"pm25": 1.0, "pm10": 2.0}, clock.now())],
                      to_epoch_ns(clock.now()))
        clock.advance(1.0)  # due: batch_max_delay_s
        wait_for(lambda: BACKLOG in seen.seqs("pm-1"), 10, "the live reading at the broker")
    finally:
        publisher.stop()
        outbox.close()
    assert publisher.failure is None
