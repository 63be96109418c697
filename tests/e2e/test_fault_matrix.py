"""The fault matrix combined: the real edge agent, Mosquitto, processor and InfluxDB, with
crashes of each drawn from a seeded schedule, one at a time and two at once (InfluxDB down
while the processor restarts, the broker killed while the agent is dead, ...). Every
reading the node numbered reaches InfluxDB exactly once, and the minute aggregates are
those of the stored readings.

The other end-to-end tests take one fault at a time; this one looks for what only a
combination breaks (a recovery that assumes the rest of the chain is up)."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from edge.agent import OUTBOX_FILE
from edge.config import load_config
from firmware_bridge.protocols.sds011.emulator import Sds011Emulator
from urbanpulse.influx_http import InfluxHTTP
from urbanpulse.stack import StackConfig, influxd, mosquitto, up
from urbanpulse.stack.layout import Layout
from urbanpulse.stack.process import is_alive
from urbanpulse.testing import wait_for

if TYPE_CHECKING:
    from tests.conftest import CloudProcess

SITE = "hn-matrix"
FAULTS = ("processor", "broker", "influxdb", "agent")
STEPS = 10
MINUTE_NS = 60_000_000_000


def _stored(reader: InfluxHTTP, node: str) -> list[tuple[int, int, float]]:
    rows = reader.query_points(f"SELECT seq, pm25 FROM raw.air_pm WHERE node = '{node}'",
                               db="urbanpulse")
    return sorted((int(r["seq"]), int(r["time"]), float(r["pm25"])) for r in rows)


def _minutes(reader: InfluxHTTP, node: str) -> dict[int, tuple[int, float, float, float]]:
    rows = reader.query_points(f"SELECT * FROM agg_1m.air_pm WHERE node = '{node}'", db="urbanpulse")
    return {int(r["time"]): (int(r["count"]), r["pm25_mean"], r["pm25_min"], r["pm25_max"])
            for r in rows}


def _assigned(outbox: Path) -> int:
    """The numbers the agent has given (it keeps running: read-only, WAL lets both be)."""
    db = sqlite3.connect(f"file:{outbox}?mode=ro", uri=True, timeout=30)
    try:
        row = db.execute("SELECT next FROM seq WHERE sensor = 'pm-1'").fetchone()
    finally:
        db.close()
    return int(row[0]) if row else 0


class Chain:
    """The four parts this test crashes and brings back."""

    def __init__(self, config: Path, cloud: CloudProcess, stack_config: StackConfig,
                 log: Path) -> None:
        self.config, self.cloud, self.stack_config, self.log = config, cloud, stack_config, log
        self.layout = Layout(stack_config.home)
        self.agent: subprocess.Popen[bytes] | None = None
        self.down: set[str] = set()

    def start_agent(self) -> None:
        with self.log.open("ab") as out:
            self.agent = subprocess.Popen(
                [sys.executable, "-m", "urbanpulse.cli", "edge", "run", "--config", str(self.config)],
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)

    def crash(self, part: str) -> None:
        if part == "processor":
            self.cloud.kill()
        elif part == "broker":
            pid = mosquitto.running_pid(self.layout)
            assert pid is not None
            os.kill(pid, signal.SIGKILL)
            wait_for(lambda: not is_alive(pid), 10, "the broker to die", every_s=0.02)
        elif part == "influxdb":
            assert influxd.stop(self.layout)
        else:
            assert self.agent is not None
            os.killpg(self.agent.pid, signal.SIGKILL)
            self.agent.wait(10)
        self.down.add(part)

    def restore(self, part: str) -> None:
        if part == "processor":
            self.cloud.start()
        elif part in ("broker", "influxdb"):
            up(self.stack_config)  # starts whichever of the two is not running
        else:
            self.start_agent()
        self.down.discard(part)

    def restore_all(self) -> None:
        for part in sorted(self.down):
            self.restore(part)


@pytest.fixture
def sds011(tmp_path: Path) -> Iterator[Sds011Emulator]:
    counter = iter(range(10**9))

    def values() -> tuple[float, float]:
        n = next(counter)
        return 10.0 + n % 83 / 4, 30.0 + n % 11

    # Behind a link of the test's own: the test stops the sensor and keeps the agent running,
    # its driver reopening the port. A stopped emulator's /dev/pts/N is soon the next pty
    # the kernel makes, another test's emulator (the other pytest-xdist worker's): the agent
    # would open it and lock that test's driver out of its own sensor (see PtyEmulator).
    emu = Sds011Emulator(values, period_s=0.05, warmup_s=0.0, link_path=str(tmp_path / "ttyPM"))
    emu.start()
    yield emu
    emu.stop()


@pytest.mark.parametrize("seed", [int(s) for s in os.environ.get("MATRIX_SEEDS", "2026,7").split(",")])
def test_crashes_of_every_part_one_and_two_at_a_time_lose_and_double_nothing(
        seed: int, sds011: Sds011Emulator, make_node_config: Callable[..., Path],
        cloud_factory: Callable[..., CloudProcess], reader: InfluxHTTP,
        stack_config: StackConfig, tmp_path: Path) -> None:
    node = f"aq-matrix-{seed}"  # each case its own series in the session's database
    config = make_node_config(SITE, node, f'[[sensors]]\nid = "pm-1"\ndriver = "sds011"\n'
                              f'port = "{sds011.port}"\nsilence_timeout_s = 30.0\nwarmup_s = 0\n',
                              delivery="cloud", ack_timeout_s=3.0)
    # A short cap on the resend backoff: the cloud is silent for many seconds in all.
    config.write_text(config.read_text().replace("ack_timeout_s = 3.0",
                                                 "ack_timeout_s = 3.0\nack_timeout_max_s = 6.0"))
    outbox = load_config(config).node.state_dir / OUTBOX_FILE
    cloud = cloud_factory("matrix")
    chain = Chain(config, cloud, stack_config, tmp_path / "agent.log")
    cloud.start()
    wait_for(lambda: "ingest subscribed" in cloud.log(), 30, "the ingest to subscribe")
    chain.start_agent()
    rng = random.Random(seed)
    schedule: list[list[str]] = []
    try:
        wait_for(lambda: len(_stored(reader, node)) >= 20, 60, "readings through the chain")
        for _ in range(STEPS):
            parts = rng.sample(FAULTS, rng.choice((1, 2)))
            schedule.append(parts)
            for part in parts:
                chain.crash(part)
                time.sleep(rng.uniform(0.2, 1.5))  # the outage's length, not a wait for anything
            for part in rng.sample(parts, len(parts)):
                chain.restore(part)
            # The chain works again before the next fault: new readings reach InfluxDB.
            wanted = len(_stored(reader, node)) + 20
            wait_for(lambda: len(_stored(reader, node)) >= wanted, 90,  # noqa: B023
                     f"readings flowing again after {parts}")
    finally:
        chain.restore_all()
    sds011.stop()  # no more readings: the agent's numbers stop growing
    try:
        assigned = _assigned(outbox)
        wait_for(lambda: [s for s, _, _ in _stored(reader, node)] == list(range(_assigned(outbox))),
                 120, "every number the node gave, once, in InfluxDB")
        assigned = _assigned(outbox)
        rows = _stored(reader, node)
        by_minute: dict[int, list[float]] = {}
        for _, ts, value in rows:
            by_minute.setdefault(ts - ts % MINUTE_NS, []).append(value)
        expected = {k: (len(v), statistics.fmean(v), min(v), max(v)) for k, v in by_minute.items()}

        def aggregates_match() -> bool:
            got = _minutes(reader, node)
            return got.keys() == expected.keys() and all(
                got[k][0] == expected[k][0] and abs(got[k][1] - expected[k][1]) < 1e-9
                and got[k][2:] == expected[k][2:] for k in got)

        wait_for(aggregates_match, 60, "minute aggregates of exactly the stored readings")
    except AssertionError:
        got = [s for s, _, _ in _stored(reader, node)]
        raise AssertionError(
            f"schedule {schedule}; assigned {_assigned(outbox)}, stored {len(got)} "
            f"({len(set(got))} distinct), missing {sorted(set(range(_assigned(outbox))) - set(got))[:20]}"
            f"\nprocessor log tail:\n{cloud.log()[-3000:]}") from None
    finally:
        if chain.agent is not None:
            os.killpg(chain.agent.pid, signal.SIGTERM)
            chain.agent.wait(30)
        cloud.stop()
    assert assigned > 200
    print(f"schedule {schedule}: {assigned} readings, each stored once")
