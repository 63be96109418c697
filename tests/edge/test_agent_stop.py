"""The agent's stop (SIGTERM: systemd's stop, a restart, an upgrade) ends every driver,
commits what they emitted and closes the outbox, whatever a driver does while it stops.

A driver whose clean-up raises another error while it is being cancelled (gpiozero's
close() failing as the pins are released) was taken for a failed driver: counted, logged
"driver failed; restarting" and started again, its cancellation spent. The agent then
waited for it for ever, without committing what the other drivers had emitted (their
partial intervals) until systemd killed it after TimeoutStopSec (found by review)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import pytest
from gpiozero.exc import PinError
from gpiozero.pins.mock import MockFactory, MockPin

from edge.agent import OUTBOX_FILE, OUTBOX_RESERVE_BYTES, STATE_FILE, Agent
from edge.config import load_config
from edge.drivers.base import DriverModule, Sample
from edge.errors import EdgeError
from edge.outbox import RESERVE_OPEN_MIN_BYTES, Outbox
from tests.disks import fill, small_disk
from urbanpulse.clock import to_epoch_ns
from urbanpulse.testing import wait_for

STOP_DEADLINE_S = 20.0  # the agent's own bound on its drivers (10 s) and its publisher's


class _ClosingFails(MockPin):
    """A mock pin whose release fails once (as lgpio's can on a chip that went away)."""

    failing: ClassVar[set[str]] = set()

    def close(self) -> None:
        super().close()
        if self.info.name in self.failing:
            self.failing.discard(self.info.name)  # not again at the device's __del__
            raise PinError(f"{self.info.name}: cannot release the line")


def _door(sensor: str, pin: int) -> str:
    return (f'[[sensors]]\nid = "{sensor}"\ndriver = "door_counter"\npin = {pin}\n'
            'interval_s = 3600\ndebounce_s = 0.002\nmin_pulse_s = 0.01\n')


@contextmanager
def _running(agent: Agent, released: threading.Event | None = None
             ) -> Iterator[Callable[[], None]]:
    """The agent on its own loop and thread while the block runs; the block gets a
    function that stops it (SIGTERM's stop event) and asserts that Agent.run returned in
    time. Tasks still pending then (a driver that did not stop) are run to their end once
    `released` is set (at the latest when the block ends)."""
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    returned = threading.Event()
    failure: list[BaseException] = []

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(agent.run(stop))
        except BaseException as exc:  # noqa: BLE001 - handed to the test below
            failure.append(exc)
        returned.set()
        pending = asyncio.all_tasks(loop)
        if pending and released is not None and released.wait(STOP_DEADLINE_S):
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        loop.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()

    def stop_and_wait() -> None:
        loop.call_soon_threadsafe(stop.set)
        assert returned.wait(STOP_DEADLINE_S), "the agent did not stop"
        assert not failure, failure

    try:
        yield stop_and_wait
    finally:
        if released is not None:
            released.set()
        thread.join(STOP_DEADLINE_S)
    assert not thread.is_alive()


def test_a_driver_whose_clean_up_fails_at_the_stop_still_stops_and_the_others_readings_are_committed(
        make_node_config: Callable[..., Path], collector: Callable[[str, str], Any]) -> None:
    pins = MockFactory(pin_class=_ClosingFails)
    _ClosingFails.failing = {"GPIO18"}
    path = make_node_config("hn-edge", "stop-fail", _door("door-1", 17) + _door("door-2", 18))
    seen = collector("hn-edge", "stop-fail")
    agent = Agent(load_config(path), pin_factory=lambda: pins)
    pin = pins.pin(17)

    def broken() -> list[bool]:
        d = agent._running.get("door-1")
        return [] if d is None else list(d.describe().get("broken", []))

    with _running(agent) as stop:
        wait_for(lambda: broken() == [False] and agent.drivers["door-2"].state == "running",
                 5, "the drivers", every_s=0.005)
        for _ in range(3):
            pin.drive_low()
            wait_for(lambda: broken() == [True], 5, "beam broken", every_s=0.005)
            pin.drive_high()
            wait_for(lambda: broken() == [False], 5, "beam clear", every_s=0.005)
        started = time.monotonic()
        stop()
    assert time.monotonic() - started < 15.0
    door2 = agent.drivers["door-2"]
    assert door2.state == "stopped"
    assert door2.restarts == 0, door2.last_error  # not taken for a failure and restarted
    outbox = Outbox(load_config(path).node.state_dir / OUTBOX_FILE).open()
    try:
        waiting = [r.reading for r in outbox.fetch(100)]
    finally:
        outbox.close()
    # door-1's partial interval, emitted as it stopped: sent, or in the outbox for the next start
    sent = [r for r in seen.readings if r.sensor == "door-1"]
    assert sum(r.values["count"] for r in sent + waiting if r.sensor == "door-1") == 3


class _Stubborn:
    """Stands for a driver that does not end when cancelled (none in the tree does: a
    bug in one, or a clean-up that waits on a device). It emits a reading, and once
    cancelled emits another and waits until the test lets it go."""

    def __init__(self, sensor_id: str, released: threading.Event) -> None:
        self.sensor_id = sensor_id
        self.released = released

    async def run(self, emit: Callable[[Sample], None]) -> None:
        emit(Sample(self.sensor_id, "traffic.loop", {"count": 1.0, "interval_s": 1.0},
                    datetime.now(UTC)))
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            emit(Sample(self.sensor_id, "traffic.loop", {"count": 2.0, "interval_s": 1.0},
                        datetime.now(UTC)))
            while not self.released.is_set():
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.sleep(0.01)  # the stuck driver's own wait, not a synchronisation

    def describe(self) -> dict[str, Any]:
        return {}


def test_a_driver_that_does_not_end_when_stopped_does_not_keep_the_others_readings_from_their_commit(
        make_node_config: Callable[..., Path], collector: Callable[[str, str], Any],
        monkeypatch: pytest.MonkeyPatch) -> None:
    import edge.agent

    pins = MockFactory()
    released = threading.Event()
    real = edge.agent.load_driver

    def load(name: str) -> DriverModule:
        if name == "traffic_loop":
            module = real(name)
            return DriverModule(name, module.parse_params,
                                lambda sensor, params, ctx: _Stubborn(sensor, released))
        return real(name)

    monkeypatch.setattr(edge.agent, "load_driver", load)
    monkeypatch.setattr(edge.agent, "DRIVER_STOP_S", 1.0)
    stuck = '[[sensors]]\nid = "loop-1"\ndriver = "traffic_loop"\npin = 18\n'
    path = make_node_config("hn-edge", "stop-stuck", _door("door-1", 17) + stuck)
    agent = Agent(load_config(path), pin_factory=lambda: pins)
    pin = pins.pin(17)

    def broken() -> list[bool]:
        d = agent._running.get("door-1")
        return [] if d is None else list(d.describe().get("broken", []))

    seen = collector("hn-edge", "stop-stuck")
    try:
        with _running(agent, released) as stop:
            wait_for(lambda: broken() == [False] and "loop-1" in agent._running, 5,
                     "the drivers", every_s=0.005)
            pin.drive_low()
            wait_for(lambda: broken() == [True], 5, "beam broken", every_s=0.005)
            pin.drive_high()
            wait_for(lambda: broken() == [False], 5, "beam clear", every_s=0.005)
            started = time.monotonic()
            stop()
            assert time.monotonic() - started < 10.0  # DRIVER_STOP_S here: 1 s
            assert agent.drivers["loop-1"].state == "stuck"
    finally:
        released.set()
    outbox = Outbox(load_config(path).node.state_dir / OUTBOX_FILE).open()
    try:
        waiting = [r.reading for r in outbox.fetch(100)]
    finally:
        outbox.close()
    readings = seen.readings + waiting
    # door-1's partial interval, and what the stuck driver emitted before and at its cancel
    assert sum(r.values["count"] for r in readings if r.sensor == "door-1") == 1
    assert sorted(r.values["count"] for r in readings if r.sensor == "loop-1") == [1, 2]


def test_the_outbox_is_closed_when_the_pins_release_fails_at_the_stop(
        make_node_config: Callable[..., Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """The agent's own pin factory (gpio.backend, "mock" here) closed at the stop raises:
    the agent still writes its state and closes the outbox (a clean close empties the WAL
    file, which is how `edge status` knows the agent stopped), then says what failed
    (`edge run` exits 3 with it, not a traceback)."""
    real_close = MockFactory.close

    def close(self: MockFactory) -> None:
        real_close(self)
        raise PinError("cannot close the GPIO chip")

    monkeypatch.setattr(MockFactory, "close", close)
    path = make_node_config("hn-edge", "stop-pins", _door("door-1", 17))
    agent = Agent(load_config(path))
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    try:
        async def run() -> None:
            task = asyncio.create_task(agent.run(stop))
            deadline = time.monotonic() + 10.0
            while agent.drivers["door-1"].state != "running":
                assert not task.done()
                assert time.monotonic() < deadline, "timed out waiting for door-1 to run"
                await asyncio.sleep(0.01)  # the poll's interval, under a deadline
            stop.set()
            await asyncio.wait_for(task, STOP_DEADLINE_S)

        with pytest.raises(EdgeError, match="GPIO pins at the stop: PinError: cannot close") as err:
            loop.run_until_complete(run())
        assert isinstance(err.value.__cause__, PinError)
    finally:
        loop.close()
    state_dir = load_config(path).node.state_dir
    wal = state_dir / (OUTBOX_FILE + "-wal")
    assert not wal.exists() or wal.stat().st_size == 0
    state = json.loads((state_dir / STATE_FILE).read_text())
    assert state["drivers"]["door-1"]["state"] == "stopped"


def test_a_clean_stop_on_a_full_disk_frees_the_room_the_next_start_opens_the_outbox_with(
        make_node_config: Callable[..., Path], collector: Callable[[str, str], Any]) -> None:
    """The clean stop's close of the outbox is its last connection's: SQLite deletes its WAL
    and shared-memory files, and on a disk whose reserve is gone the room they leave is
    made the reserve's opening part (edge/outbox.py, "The reserve"), so that the next start
    opens the outbox on a disk the logs keep full. The publisher's thread kept its own
    connection open until the garbage collector came to it: the agent's close was then not
    the last, freed nothing, made no reserve, and the next start exited 3. The collector is
    off here, so that its timing does not decide."""
    path = make_node_config("hn-edge", "stop-full", _door("door-1", 17))
    seen = collector("hn-edge", "stop-full")
    state_dir = load_config(path).node.state_dir
    with small_disk(state_dir, "20m") as disk:
        outbox = Outbox(disk / OUTBOX_FILE).open()  # yesterday's agent's: no reserve
        ts = datetime.now(UTC)
        for _ in range(10):
            outbox.append([Sample("door-1", "hospital.door", {"count": 1.0, "interval_s": 60.0},
                                  ts)] * 40, to_epoch_ns(ts))
        outbox.close()
        fill(disk, 600 * 1024)  # too little room for a reserve to be made at the start
        agent = Agent(load_config(path), pin_factory=MockFactory)
        gc.disable()
        try:
            with _running(agent) as stop:
                wait_for(lambda: agent.publisher is not None
                         and agent.publisher.state.readings_acked >= 400, 10, "the rows sent")
                assert not agent.outbox.reserve_path.exists()
                (disk / "logs").mkdir()
                fill(disk / "logs")  # the logs took the last block
                stop()
            reserve = agent.outbox.reserve_path
            assert reserve.exists()
            assert reserve.stat().st_size >= RESERVE_OPEN_MIN_BYTES
        finally:
            gc.enable()
        (disk / "logs2").mkdir()
        fill(disk / "logs2")  # and the room the stop left
        Outbox(disk / OUTBOX_FILE, reserve_bytes=OUTBOX_RESERVE_BYTES).open().close()
    assert {r.seq for r in seen.readings if r.sensor == "door-1"} >= set(range(400))
