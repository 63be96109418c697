"""An ingest stopped while messages keep coming: it journals and acknowledges what it had
taken when the stop began, takes no more (the broker keeps the rest for its session), and
ends at once, its instance lock released. Before, its commit thread went on committing
what kept arriving until the stop's 10 s join gave up, left running and holding the lock,
and the acks of its last commits were dropped at the disconnect (their nodes send those
batches again later). Nothing is lost either way: the next ingest of the session gets
every message the first did not acknowledge. The session's real Mosquitto; the journal's
commits made slow (a busy disk) so that messages arrive during each."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cloud.ingest import Ingest
from cloud.journal import Journal, journal_path
from tests.cloud.ingest_parts import Node, batch_payload, cloud_mqtt, journal_rows, node_on_stack
from urbanpulse.stack import StackInfo
from urbanpulse.testing import wait_for
from urbanpulse.wire import data_topic

pytestmark = pytest.mark.stack

BURST = 50  # published at once, then waited for: the broker's PUBACKs pace the node
COMMIT_S = 0.03  # a slow disk's commit (a busy disk's fsync): messages arrive meanwhile


class SlowJournal(Journal):
    def append(self, *args: Any, **kwargs: Any) -> int:
        time.sleep(COMMIT_S)  # stands for the flush, not a synchronisation
        return super().append(*args, **kwargs)


@pytest.fixture
def node(stack: StackInfo, add_stack_node: Any, tmp_path: Path) -> Iterator[Node]:
    yield from node_on_stack(add_stack_node, tmp_path)


def test_an_ingest_stopped_under_load_ends_at_once_and_the_next_one_gets_the_rest(
        stack: StackInfo, node: Node, tmp_path: Path) -> None:
    cfg = cloud_mqtt(stack, tmp_path, node.site)
    path = journal_path(tmp_path / "state" / "journal", "i0")
    journal = SlowJournal(path, "i0").open()
    first = Ingest(cfg, journal, min_free_bytes=0)
    first.start()
    sent: list[int] = []
    publishing = threading.Event()
    done = threading.Event()

    def publish() -> None:  # as fast as the broker takes them, until told to stop
        k = 0
        while not done.is_set():
            infos = [node.client.publish(data_topic(node.site, node.node),
                                         batch_payload(node.site, node.node, k + i), qos=1)
                     for i in range(BURST)]
            for info in infos:
                info.wait_for_publish(10)
            sent.extend(range(k, k + BURST))
            k += BURST
            publishing.set()

    publisher = threading.Thread(target=publish, daemon=True)
    try:
        assert first.wait_subscribed(10)
        publisher.start()
        assert publishing.wait(10)
        wait_for(lambda: first.stats.committed >= 200, 30, "the ingest busy committing")
        started = time.monotonic()
        first.stop()
        took = time.monotonic() - started
    finally:
        done.set()
        publisher.join(20)
        journal.close()
    assert took < 3.0, f"the stop took {took:.1f} s"
    assert first._thread is not None
    assert not first._thread.is_alive()
    assert first.failure is None

    journal = Journal(path, "i0").open()
    second = Ingest(cfg, journal, min_free_bytes=0)
    second.start()  # would wait for the lock, had the first kept it
    try:
        want = {batch_payload(node.site, node.node, k) for k in sent}
        wait_for(lambda: set(journal_rows(path)) >= want, 30, "every batch sent journaled")
        wait_for(lambda: set(node.acks()) >= {f"df.{k}" for k in sent}, 10, "every batch acked")
    finally:
        second.stop()
        journal.close()
