"""The dataflow's InfluxDB partition writes on its own thread; its epoch snapshot is the
barrier that keeps exactly-once in effect. A stand-in transport holds a write mid-flight,
which a real InfluxDB cannot be made to do on cue; the real one is used by the e2e tests
(SIGKILL, InfluxDB down for a minute)."""

from __future__ import annotations

import threading

import pytest

from cloud.config import parse_cloud_config
from cloud.errors import SinkError
from cloud.flow import ABORT_JOIN_S, AbortStop, InfluxPartition, InfluxSink, sink_part
from cloud.health import ProcessorHealth
from cloud.logic.records import Point
from cloud.sink import InfluxWriter, SinkStats
from urbanpulse.clock import SystemClock
from urbanpulse.influx_http import InfluxError
from urbanpulse.testing import wait_for


class HeldTransport:
    """Records bodies; each write waits until the test releases it."""

    def __init__(self, fail_with: InfluxError | None = None) -> None:
        self.bodies: list[bytes] = []
        self.release = threading.Event()
        self.entered = threading.Event()
        self.fail_with = fail_with

    def write(self, lines: bytes, *, db: str, rp: str | None = None, precision: str = "ns") -> None:
        self.entered.set()
        self.release.wait(30)
        if self.fail_with is not None:
            raise self.fail_with
        self.bodies.append(lines)


def test_snapshot_returns_only_after_every_handed_point_is_written() -> None:
    transport = HeldTransport()
    part = InfluxPartition(InfluxWriter(transport, "db", 5000))
    part.write_batch([[("raw", "m f=1 1"), ("raw", "m f=2 2")], [("raw", "m f=3 3")]])
    wait_for(transport.entered.is_set, 10, "the writer thread to start a write")
    done = threading.Event()
    snap = threading.Thread(target=lambda: (part.snapshot(), done.set()))
    snap.start()
    assert not done.wait(0.2), "snapshot returned while a write was in flight"
    transport.release.set()
    snap.join(10)
    assert done.is_set()
    assert b"".join(transport.bodies).split(b"\n") == [b"m f=1 1", b"m f=2 2", b"m f=3 3"]
    part.close()


def test_write_batch_blocks_at_the_bound_until_the_writer_catches_up() -> None:
    transport = HeldTransport()
    part = InfluxPartition(InfluxWriter(transport, "db", 5000), max_pending=2)
    part.write_batch([[("raw", "m f=1 1"), ("raw", "m f=2 2")]])
    wait_for(transport.entered.is_set, 10, "the first write")
    second = threading.Thread(target=part.write_batch, args=([[("raw", "m f=3 3")]],))
    second.start()
    second.join(0.2)
    assert second.is_alive(), "write_batch did not wait at the bound"
    transport.release.set()
    second.join(10)
    part.close()
    assert b"\n".join(transport.bodies).split(b"\n") == [b"m f=1 1", b"m f=2 2", b"m f=3 3"]


def test_a_writer_failure_reaches_the_dataflow() -> None:
    stop = threading.Event()
    stop.set()  # the writer gives up at its first retry wait, as on shutdown
    transport = HeldTransport(fail_with=InfluxError(503, "down"))
    transport.release.set()
    part = InfluxPartition(InfluxWriter(transport, "db", 5000, stop=stop))
    part.write_batch([[("raw", "m f=1 1")]])
    with pytest.raises(SinkError, match="InfluxDB writer failed"):
        part.snapshot()


def test_each_process_writes_through_its_own_partition() -> None:
    cfg = parse_cloud_config({"mqtt": {"password_file": "p", "ca_file": "c"},
                              "influx": {"password_file": "p"},
                              "flow": {"addresses": ["127.0.0.1:1", "127.0.0.1:2"], "process_id": 1}})
    sink = InfluxSink(cfg, process_id=1)
    assert sink.list_parts()[0] == sink_part(1)
    assert sink_part(0) not in sink.list_parts()  # process 0's own: listed by process 0 only
    parts = sorted([sink_part(0), sink_part(1), sink_part(12)])
    assert [sink.part_fn(p) for p in parts] == [0, 1, 12]


class DownTransport:
    """InfluxDB unavailable: every write fails as retryable."""

    def __init__(self) -> None:
        self.attempts = 0

    def write(self, lines: bytes, *, db: str, rp: str | None = None, precision: str = "ns") -> None:
        self.attempts += 1
        raise InfluxError(503, "down")


def test_stopping_ends_the_waits_for_an_unavailable_influxdb_without_committing() -> None:
    stop = threading.Event()
    transport = DownTransport()
    part = InfluxPartition(InfluxWriter(transport, "db", 5000, stop=stop), max_pending=1, stop=stop)
    part.write_batch([[("raw", "m f=1 1")]])
    outcome: list[BaseException | None] = []

    def snapshot() -> None:
        try:
            part.snapshot()
            outcome.append(None)
        except SinkError as exc:
            outcome.append(exc)

    snap = threading.Thread(target=snapshot)
    snap.start()
    wait_for(lambda: transport.attempts >= 2, 10, "the writer to retry")
    assert snap.is_alive(), "the snapshot returned while the points were unwritten"
    stop.set()
    snap.join(5)
    assert not snap.is_alive(), "the snapshot kept waiting after the stop"
    assert isinstance(outcome[0], SinkError)  # the epoch is not committed: nothing lost
    with pytest.raises(SinkError, match="stopped"):
        part.write_batch([[("raw", "m f=2 2")]])
    part.close()
    assert part._thread is not None
    assert not part._thread.is_alive()


def test_stopping_ends_the_wait_even_while_a_write_hangs_in_flight() -> None:
    stop = threading.Event()
    transport = HeldTransport()  # InfluxDB accepted the connection and answers nothing
    part = InfluxPartition(InfluxWriter(transport, "db", 5000, stop=stop), stop=stop)
    part.write_batch([[("raw", "m f=1 1")]])
    wait_for(transport.entered.is_set, 10, "the write to be in flight")
    stop.set()
    with pytest.raises(SinkError, match="stopped with 1 points not yet written"):
        part.snapshot()
    transport.release.set()
    part.close()


def test_closed_after_an_abort_it_writes_nothing_more_and_waits_only_briefly_for_influxdb() -> None:
    """Bytewax closes the partitions as it leaves an aborted run (flow.stop = "abort"): the
    epoch under way is not committed and read again, so what waits is dropped, the held
    requests stay in the committed snapshot, and a write InfluxDB does not answer is left."""
    transport = HeldTransport()  # InfluxDB accepted the connection and answers nothing
    abort = AbortStop()
    part = InfluxPartition(InfluxWriter(transport, "db", 5000), abort=abort)
    part.write_batch([[("raw", "m f=1 1")]])
    wait_for(transport.entered.is_set, 10, "the write to be in flight")
    part.write_batch([[("raw", "m f=2 2")]])  # waits behind it
    abort.set()
    abort.raised = True  # as the journal source does, raising AbortExecution
    closed = threading.Thread(target=part.close)
    closed.start()
    closed.join(ABORT_JOIN_S + 5)
    assert not closed.is_alive(), "close waited for InfluxDB after the abort"
    assert part.pending_points == 1  # the one in flight; the one waiting dropped
    transport.release.set()
    wait_for(lambda: part.pending_points == 0, 10, "the write in flight to end")
    assert transport.bodies == [b"m f=1 1"]


class BrokenHealth(ProcessorHealth):
    """A health whose report raises what no InfluxDB error is (a bug in it, say)."""

    def report(self, stats: SinkStats, pending_points: int) -> Point:
        raise ValueError("a broken report")


def test_anything_the_writer_thread_raises_reaches_the_dataflow_instead_of_a_wait_for_ever() -> None:
    transport = HeldTransport()
    transport.release.set()
    part = InfluxPartition(InfluxWriter(transport, "db", 5000),
                           health=BrokenHealth(0, 0.01, SystemClock()))
    part.write_batch([[("raw", "m f=1 1")]])
    with pytest.raises(SinkError, match="a broken report"):
        wait_for(lambda: part.flush() or None, 10, "the writer's failure")  # type: ignore[func-returns-value]
    part.stop.set()
    part.close()
