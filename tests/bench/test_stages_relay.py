"""`bench.pipeline.stages --relay`: the stages see, from the sites' relays, the node messages
the processor sees (each message once, in its node's order), as without relays."""

from __future__ import annotations

from datetime import UTC, datetime

from bench.pipeline.stages import _records
from bench.pipeline.workload import generate
from cloud.journal import JournalRecord
from cloud.logic.records import expand_relays


def test_relayed_records_expand_to_every_node_message() -> None:
    w = generate(600, batch=500, live_s=1.0, now=datetime(2026, 6, 1, 12, tzinfo=UTC))
    direct = _records(w)
    relays = _records(w, relay_s=1.0)
    assert 0 < len(relays) < len(direct)
    assert all(r.topic.endswith("/relay") for r in relays)
    expanded = expand_relays(relays)
    assert all(type(r) is JournalRecord for r in expanded)

    def by_node(records: list[JournalRecord]) -> dict[str, list[tuple[str, bytes]]]:
        out: dict[str, list[tuple[str, bytes]]] = {}
        for r in records:
            out.setdefault(r.topic, []).append((r.topic, r.payload))
        return out

    assert by_node([r for r in expanded if type(r) is JournalRecord]) == by_node(direct)
