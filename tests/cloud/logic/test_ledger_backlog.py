"""The delivery ledger of hours older than the node state's horizon. A node back from an
outage longer than the horizon sends its backlog oldest first, in messages of at most 500
readings, after its fresh readings: the hours of that backlog are older than the horizon
from the first message on. Each hour's ledger point must count every message of it (the
last write is what InfluxDB keeps), and an hour already written and let go must not be
written again from one reading that arrives much later (a straggler would replace the
hour's counts with its own)."""

from __future__ import annotations

import re
from dataclasses import replace

from cloud.logic.node import MAX_LEDGER_HOURS, NodeState
from cloud.logic.records import RP_1H, NodeData
from urbanpulse.wire import Reading

MINUTE_NS = 60 * 10**9
HOUR_NS = 60 * MINUTE_NS
HORIZON_NS = 6 * HOUR_NS
T0 = 1_795_000_000 * 10**9 - 1_795_000_000 * 10**9 % HOUR_NS  # an hour's start
NODE = "ward-1"
SENSORS = ("bed-1", "bed-2", "bed-3")


def _readings(hour: int, items: range) -> list[Reading]:
    """Readings of the three beds in `hour` (hours after T0), one a minute each: item i is
    bed i % 3's reading of minute i // 3, numbered 60 a bed an hour."""
    return [Reading(SENSORS[i % 3], "hospital.bed", T0 + hour * HOUR_NS + (i // 3) * MINUTE_NS + i % 3,
                    hour * 60 + i // 3, {"occupied": 1}) for i in items]


class _Node:
    def __init__(self) -> None:
        self.state = NodeState(HORIZON_NS, detect=False)
        self.ledgers: dict[int, dict[str, int]] = {}  # what InfluxDB holds: the last write

    def send(self, readings: list[Reading], received_ns: int) -> None:
        points = self.state.process(NodeData(f"hn/{NODE}", "hn", NODE, received_ns, readings))
        for rp, ln in points:
            if rp == RP_1H and ln.startswith("ledger,"):
                stamp = int(ln.rsplit(" ", 1)[1])
                self.ledgers[stamp] = {k: int(v) for k, v in re.findall(r"(\w+)=(-?\d+)i", ln)}


def test_a_backlog_older_than_the_horizon_is_counted_over_all_its_messages() -> None:
    node = _Node()
    now = T0 + 12 * HOUR_NS
    node.send(_readings(12, range(0, 30)), now)  # back: the fresh readings first
    # then hour 2 (10 h ago, beyond the horizon), 180 readings, in three messages
    for i, part in enumerate((range(0, 60), range(60, 120), range(120, 180))):
        node.send(_readings(2, part), now + (i + 1) * 10**9)
    hour2 = node.ledgers[T0 + 2 * HOUR_NS]
    assert hour2["received"] == 180, hour2
    assert hour2["expected"] == 180, hour2
    assert hour2["missing"] == 0, hour2


def test_a_straggler_does_not_replace_an_hour_already_written_and_let_go() -> None:
    node = _Node()
    node.send(_readings(0, range(0, 180)), T0 + HOUR_NS)
    assert node.ledgers[T0]["received"] == 180
    # the node goes on for a day; hour 0 leaves the state
    for hour in range(1, 25):
        node.send(_readings(hour, range(0, 180)), T0 + (hour + 1) * HOUR_NS)
    assert T0 not in node.state.ledger
    # a reading of hour 0 delivered again a day later (a resend the broker kept)
    node.send(_readings(0, range(90, 91)), T0 + 26 * HOUR_NS)
    assert node.ledgers[T0]["received"] == 180, node.ledgers[T0]


def test_hours_are_let_go_once_idle_so_the_state_stays_bounded() -> None:
    node = _Node()
    for hour in range(0, 48):
        node.send(_readings(hour, range(0, 180)), T0 + (hour + 1) * HOUR_NS)
    # the horizon and the hour being written, and those touched in the last horizon of
    # receive time: nothing older
    assert len(node.state.ledger) <= HORIZON_NS // HOUR_NS + 2, sorted(node.state.ledger)


def test_the_state_holds_at_most_max_ledger_hours_when_no_reading_enters_the_windows() -> None:
    """A node whose clock the kernel never calls synchronised (an RTC but no NTP server on
    its network) flags every reading clock_unsynced: none enters the windows, so the
    horizon has no newest reading to count back from and no hour is ever older than it.
    Its ledger hours must still be let go past MAX_LEDGER_HOURS."""
    node = _Node()
    hours = MAX_LEDGER_HOURS + 48
    for hour in range(hours):
        unsynced = [replace(r, flags=("clock_unsynced",)) for r in _readings(hour, range(0, 30))]
        node.send(unsynced, T0 + (hour + 1) * HOUR_NS)
    assert node.ledgers[T0 + (hours - 1) * HOUR_NS]["received"] == 30
    assert len(node.state.ledger) <= MAX_LEDGER_HOURS, len(node.state.ledger)
    assert min(node.state.ledger) == T0 + (hours - MAX_LEDGER_HOURS) * HOUR_NS


def test_with_a_short_horizon_a_backlog_after_a_short_outage_is_counted() -> None:
    """flow.aggregate_horizon_s may be as short as 2 minutes; the ledger's hours must not
    go with it. Here 10 minutes: a node's link drops at 00:45 for 26 minutes; back, it
    sends its fresh readings, then the 26 minutes it kept. Hour 0 must count all 180
    readings (else its last 45 are counted in no hour: it was let go 10 minutes after its
    last message, before they came)."""
    node = _Node()
    node.state = NodeState(10 * MINUTE_NS, detect=False)
    for minute in range(45):  # live: a message a minute
        node.send(_readings(0, range(minute * 3, minute * 3 + 3)), T0 + minute * MINUTE_NS + 10**9)
    back = T0 + HOUR_NS + 11 * MINUTE_NS
    node.send(_readings(1, range(33, 36)), back)  # the fresh minute first
    node.send(_readings(0, range(135, 180)), back + 10**9)  # then the backlog, oldest first
    node.send(_readings(1, range(0, 33)), back + 2 * 10**9)
    hour0 = node.ledgers[T0]
    assert (hour0["received"], hour0["missing"]) == (180, 0), hour0


def test_with_a_short_horizon_a_batch_sent_again_late_is_counted() -> None:
    """A batch the cloud did not confirm (a broker crash) is sent again up to 16 minutes
    later (edge mqtt.ack_timeout_s doubling to 8 times). With a 10-minute horizon, hour 0
    must still take it: else the stored hour says its 3 readings are missing, and "Missing
    data" fires for readings that arrived, for as long as it judges the hour."""
    node = _Node()
    node.state = NodeState(10 * MINUTE_NS, detect=False)
    for minute in range(60):
        if minute != 50:  # lost on the way
            node.send(_readings(0, range(minute * 3, minute * 3 + 3)), T0 + minute * MINUTE_NS + 10**9)
    for minute in range(16):
        node.send(_readings(1, range(minute * 3, minute * 3 + 3)), T0 + HOUR_NS + minute * MINUTE_NS + 10**9)
    node.send(_readings(0, range(150, 153)), T0 + HOUR_NS + 16 * MINUTE_NS + 2 * 10**9)
    hour0 = node.ledgers[T0]
    assert (hour0["received"], hour0["missing"]) == (180, 0), hour0
