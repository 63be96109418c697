"""The InfluxDB partition groups what Bytewax hands it a few points at a time into one
request every WRITE_MIN_SPACING_S (live, a request per hand-over cost InfluxDB more than
the points: bench.pipeline.run --live 1 at 2,000 readings/s, 2,130 requests against 447,
InfluxDB's CPU 0.15 -> 0.08 cores). Its clock is injected; the transport records bodies,
as the sink's other unit tests do (a real InfluxDB cannot tell requests apart afterwards;
the e2e tests write through the real one)."""

from __future__ import annotations

import threading
import time

from cloud.flow import WRITE_MIN_SPACING_S, WRITE_NOW_POINTS, InfluxPartition
from cloud.sink import InfluxWriter
from urbanpulse.testing import wait_for


class Recording:
    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        self.lock = threading.Lock()

    def write(self, lines: bytes, *, db: str, rp: str | None = None, precision: str = "ns") -> None:
        with self.lock:
            self.bodies.append(lines)

    def count(self) -> int:
        with self.lock:
            return len(self.bodies)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _partition() -> tuple[InfluxPartition, Recording, Clock]:
    transport, clock = Recording(), Clock()
    return InfluxPartition(InfluxWriter(transport, "db", 5000), monotonic=clock), transport, clock


def _points(i: int, n: int = 1) -> list[tuple[str | None, str]]:
    return [("raw", f"m f={i} {i * 1000 + k}") for k in range(n)]


def test_points_handed_over_within_the_spacing_go_out_together_at_the_epoch_end() -> None:
    part, transport, _ = _partition()
    part.write_batch([_points(0)])
    wait_for(lambda: transport.count() == 1, 10, "the first write, at once")
    for i in range(1, 20):
        part.write_batch([_points(i)])
    # the clock stands still: nothing more may go out before the epoch ends (before, each
    # hand-over was a request of its own within milliseconds)
    deadline = time.monotonic() + 0.3
    while time.monotonic() < deadline:
        assert transport.count() == 1, "a hand-over went out within the spacing"
        time.sleep(0.01)  # nothing may go out for a while: the time itself, not a synchronisation
    part.snapshot()
    assert transport.count() == 2
    assert transport.bodies[1].split(b"\n") == [f"m f={i} {i * 1000}".encode() for i in range(1, 20)]
    part.close()


def test_points_go_out_once_the_spacing_has_passed_without_an_epoch_end() -> None:
    part, transport, clock = _partition()
    part.write_batch([_points(0)])
    wait_for(lambda: transport.count() == 1, 10, "the first write")
    part.write_batch([_points(1)])
    clock.now += WRITE_MIN_SPACING_S
    wait_for(lambda: transport.count() == 2, 10, "the second write, the spacing passed")
    part.close()


def test_a_large_hand_over_is_written_without_waiting_for_the_spacing() -> None:
    part, transport, _ = _partition()
    part.write_batch([_points(0)])
    wait_for(lambda: transport.count() == 1, 10, "the first write")
    part.write_batch([_points(1, WRITE_NOW_POINTS)])
    wait_for(lambda: transport.count() >= 2, 10, "the large batch, the clock standing still")
    part.close()
    assert sum(len(b.split(b"\n")) for b in transport.bodies) == 1 + WRITE_NOW_POINTS
