"""The ingest on a full journal: it acknowledges nothing it has not committed, holds what
it has, retries, and resumes by itself once space returns; messages published meanwhile
are journaled exactly once. The session's real Mosquitto; the journal is made full by
SQLite itself (`PRAGMA max_page_count` on the ingest's own connection), which reports
SQLITE_FULL ("database or disk is full") as a full disk would, without filling one."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cloud.ingest import Ingest
from cloud.journal import Journal, journal_path
from tests.cloud.ingest_parts import (
    NO_LIMIT,
    Node,
    batch_payload,
    cloud_mqtt,
    fill_journal,
    ingest_log,
    journal_rows,
    node_on_stack,
)
from urbanpulse.stack import StackInfo
from urbanpulse.testing import wait_for

pytestmark = pytest.mark.stack


@pytest.fixture
def node(stack: StackInfo, add_stack_node: Any, tmp_path: Path) -> Iterator[Node]:
    yield from node_on_stack(add_stack_node, tmp_path)


HELD = 10  # the ingest's Receive Maximum here: what the broker may send it unacknowledged


def test_messages_published_while_the_journal_is_full_are_journaled_once_when_space_returns(
        stack: StackInfo, node: Node, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="urbanpulse.cloud.ingest")
    cfg = cloud_mqtt(stack, tmp_path, node.site)
    journal = Journal(journal_path(tmp_path / "state" / "journal", "i0"), "i0").open()
    ingest = Ingest(cfg, journal, min_free_bytes=0, receive_maximum=HELD)
    ingest.start()
    try:
        assert ingest.wait_subscribed(10)
        node.publish(range(1))
        wait_for(lambda: node.acks() == ["df.0"], 10, "the first batch's ack")

        fill_journal(journal)
        node.publish(range(1, 31))  # the broker has them all (its PUBACK to the node)
        wait_for(lambda: ingest.stats.received > HELD and ingest.stats.commit_failures >= 4, 20,
                 "the ingest to take what the broker may send it and retry its commit")
        assert ingest.stats.received == 1 + HELD  # the broker keeps the other 20
        assert ingest.stats.connected
        assert "database or disk is full" in (ingest.stats.holding or "")
        assert len(journal_rows(journal.path)) == 1
        assert node.acks() == ["df.0"]
        assert ingest.stats.acks_sent == 1

        journal.db.execute(f"PRAGMA max_page_count = {NO_LIMIT}")  # space returns
        wait_for(lambda: len(journal_rows(journal.path)) >= 31, 20, "every held batch journaled")
        wait_for(lambda: len(node.acks()) >= 31, 10, "every batch acked")
        assert ingest.stats.holding is None
    finally:
        ingest.stop()
        journal.close()
    rows = journal_rows(journal.path)
    assert sorted(rows) == sorted(batch_payload(node.site, node.node, k) for k in range(31))
    assert sorted(node.acks()) == sorted(f"df.{k}" for k in range(31))
    (held,) = ingest_log(caplog, logging.WARNING)  # once for the episode, not per retry
    assert "database or disk is full" in held
    assert len([m for m in ingest_log(caplog, logging.INFO) if "journals again" in m]) == 1


def test_an_ingest_stopped_while_the_journal_is_full_acknowledged_none_of_what_it_held(
        stack: StackInfo, node: Node, tmp_path: Path) -> None:
    """Nothing held was acknowledged to the broker: it sends all of it again to the next
    ingest of the same session, which journals each message once."""
    cfg = cloud_mqtt(stack, tmp_path, node.site)
    path = journal_path(tmp_path / "state" / "journal", "i0")
    journal = Journal(path, "i0").open()
    first = Ingest(cfg, journal, min_free_bytes=0, receive_maximum=HELD)
    first.start()
    try:
        assert first.wait_subscribed(10)
        fill_journal(journal)
        node.publish(range(5))
        wait_for(lambda: first.stats.received == 5 and first.stats.commit_failures >= 2, 20,
                 "the ingest holding what it received")
    finally:
        first.stop()
        journal.close()
    assert journal_rows(path) == []
    assert node.acks() == []

    journal = Journal(path, "i0").open()  # a connection without the page limit: space
    second = Ingest(cfg, journal, min_free_bytes=0)
    second.start()
    try:
        wait_for(lambda: len(journal_rows(path)) >= 5, 20, "the broker's redelivery journaled")
        wait_for(lambda: len(node.acks()) >= 5, 10, "every batch acked")
    finally:
        second.stop()
        journal.close()
    assert sorted(journal_rows(path)) == sorted(batch_payload(node.site, node.node, k) for k in range(5))
    assert sorted(node.acks()) == [f"df.{k}" for k in range(5)]


class BrokenJournal(Journal):
    """A journal whose append fails with what no full disk raises: a bug, say."""

    def append(self, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        raise RuntimeError("a bug in the journal")


def test_an_unexpected_error_in_the_commit_thread_ends_the_ingest_and_acknowledges_nothing(
        stack: StackInfo, node: Node, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Before, the thread ended alone and the ingest stayed connected, journaling nothing:
    `cloud ingest` now exits (on_failure), and `cloud run` starts it again."""
    cfg = cloud_mqtt(stack, tmp_path, node.site)
    journal = BrokenJournal(journal_path(tmp_path / "state" / "journal", "i0"), "i0").open()
    failed: list[bool] = []
    ingest = Ingest(cfg, journal, min_free_bytes=0, on_failure=lambda: failed.append(True))
    ingest.start()
    try:
        assert ingest.wait_subscribed(10)
        node.publish(range(1))
        wait_for(lambda: failed, 10, "the ingest to report its failure")
    finally:
        ingest.stop()
        journal.close()
    assert isinstance(ingest.failure, RuntimeError)
    assert node.acks() == []
    assert ingest.stats.committed == 0
    assert any("commit thread failed" in r.getMessage() for r in caplog.records
               if r.levelno == logging.CRITICAL)
