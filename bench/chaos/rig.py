"""The real parts the soak breaks and brings back.

A private stack (bench.pipeline.privstack: Mosquitto and InfluxDB on free ports), the
processor (`urbanpulse cloud run`, its ingest a child process; or `processes` of them as
one Bytewax cluster on loopback, each restarted when it exits by itself, as systemd's
`Restart=always` does), and `agents` edge agents
(`urbanpulse edge run`, each its own process, on-disk outbox, `delivery = "cloud"`), each
reading emulated SDS011s on pseudo-terminals; the first `disks` agents' state directory (the
outbox's) on a tmpfs of its own, which the soak fills and frees; the first `clocks` agents
on a wall clock the soak steps (bench/chaos/stepped_agent.py). Every link that can be partitioned runs
through a PartitionProxy (tests/netfault.py): each node's to the broker, the ingest's to
the broker, the processor's to InfluxDB. A witness subscribes to the nodes' data as the
cloud user, directly (no proxy), to know what each published reading carried.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.chaos.errors import ChaosError
from bench.chaos.plan import INGEST, RESTORE, Step, kind, processor_parts
from bench.chaos.stepped_agent import write_offset
from bench.pipeline.privstack import PrivateStack, Processor, cloud_config
from edge.agent import OUTBOX_FILE
from firmware_bridge.protocols.sds011.emulator import Sds011Emulator
from tests.conftest import Collector, node_config
from tests.disks import fill
from tests.netfault import PartitionProxy, proxy_for_url
from urbanpulse.stack import StackInfo, influxd, mosquitto
from urbanpulse.stack.layout import Layout
from urbanpulse.stack.process import free_ports, is_alive, stop_group

SITE = "hn-chaos"
EDGE_KEEPALIVE_S = 2
INGEST_KEEPALIVE_S = 5  # the lowest the cloud config takes
INFLUX_TIMEOUT_S = 2.0
ACK_TIMEOUT_S = 3.0
ACK_TIMEOUT_MAX_S = 6.0
STOP_WAIT_S = 30.0
# A processor that exits by itself is started again this long after (the unit's
# RestartSec=5, ansible/roles/processor/files/urbanpulse-cloud.service): a process of a
# cluster exits so (code 3) when it loses another, and the cluster forms again once every
# process runs (docs/runbook.md, "Processor silent").
RESTART_S = 5.0
PEER_LOST = "lost the connection to another process of the cluster"
EXIT_PEER_LOST = 3
# A node's state disk for the full-disk fault: room for the agent's 8 MiB reserve (made when
# 24 MiB are free, docs/delivery.md, "The SD card full") and the outbox of a long outage.
DISK_SIZE = "48m"


class Witness(Collector):
    """A Collector (tests/conftest.py) that subscribes again at every connect: a broker
    SIGKILLed before its autosave forgets the persistent session, and the subscription."""

    def __init__(self, info: StackInfo, site: str, node: str) -> None:
        super().__init__(info, site, node)
        self.client.on_connect = self._on_connect

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if not reason.is_failure:
            client.subscribe(self.topic, qos=1)


class Node:
    """One edge agent process, its sensors' emulators and its link's proxy."""

    def __init__(self, index: int, sensors: int, period_s: float, workdir: Path,
                 outbox: dict[str, Any] | None = None) -> None:
        self.index = index
        self.outbox_keys = outbox or {}  # [outbox] keys of its config
        self.offset_file: Path | None = None  # set: run on a wall clock moved by its seconds
        self.name = f"aq-chaos-{index}"
        self.sensors = [f"pm-{j}" for j in range(sensors)]
        self.workdir = workdir
        self.state_dir = workdir / f"state-{self.name}"
        self.config_path = workdir / f"{self.name}.toml"
        self.log_path = workdir / f"{self.name}.log"
        counter = iter(range(10**9))

        def values() -> tuple[float, float]:
            n = next(counter)
            return 5.0 + (n * 7 + index * 13) % 400 / 4, 20.0 + n % 97

        self.emulators = [Sds011Emulator(values, period_s=period_s, warmup_s=0.0) for _ in self.sensors]
        self.proc: subprocess.Popen[bytes] | None = None
        self.proxy: PartitionProxy | None = None

    @property
    def outbox(self) -> Path:
        return self.state_dir / OUTBOX_FILE

    def configure(self, stack: PrivateStack, proxy: PartitionProxy) -> None:
        self.proxy = proxy
        ports = [emu.start() for emu in self.emulators]
        sensors = "\n".join(
            f'[[sensors]]\nid = "{sid}"\ndriver = "sds011"\nport = "{port}"\n'
            f"silence_timeout_s = 30.0\nwarmup_s = 0\n"
            for sid, port in zip(self.sensors, ports, strict=True))
        creds = stack.nodes[f"{SITE}.{self.name}"]
        text = node_config(stack.info, creds, SITE, self.name, self.state_dir, sensors,
                           delivery="cloud", ack_timeout_s=ACK_TIMEOUT_S, **self.outbox_keys)
        text = text.replace(f"port = {creds.port}\n", f"port = {proxy.port}\n"
                            f"keepalive_s = {EDGE_KEEPALIVE_S}\nack_timeout_max_s = {ACK_TIMEOUT_MAX_S}\n", 1)
        self.config_path.write_text(text)

    def start(self) -> None:
        argv = ["-m", "urbanpulse.cli", "edge", "run", "--config", str(self.config_path)]
        if self.offset_file is not None:
            argv = ["-m", "bench.chaos.stepped_agent", "--config", str(self.config_path),
                    "--offset-file", str(self.offset_file)]
        with self.log_path.open("ab") as out:
            self.proc = subprocess.Popen([sys.executable, *argv], stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True)

    def signal(self, signum: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signum)

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait(STOP_WAIT_S)

    def term(self) -> None:
        self.signal(signal.SIGTERM)
        if self.proc is not None:
            try:
                self.proc.wait(STOP_WAIT_S)
            except subprocess.TimeoutExpired as exc:
                raise ChaosError(f"{self.name} did not stop within {STOP_WAIT_S} s of SIGTERM") from exc

    def stop_sensors(self) -> None:
        for emu in self.emulators:
            emu.stop()

    def numbered(self) -> dict[str, int]:
        """sensor -> how many numbers the agent gave it (read-only: the agent may be running)."""
        if not self.outbox.exists():
            return dict.fromkeys(self.sensors, 0)
        db = sqlite3.connect(f"file:{self.outbox}?mode=ro", uri=True, timeout=30)
        try:
            rows = dict(db.execute("SELECT sensor, next FROM seq").fetchall())
        finally:
            db.close()
        return {s: int(rows.get(s, 0)) for s in self.sensors}

    def logged(self, text: str) -> int:
        """How many lines of the agent's log (all its runs) contain `text`."""
        if not self.log_path.exists():
            return 0
        return sum(text in line for line in self.log_path.read_text(errors="replace").splitlines())

    def evicted(self) -> int:
        """The outbox's count of rows let go unconfirmed (`outbox_evicted` of the heartbeat)."""
        if not self.outbox.exists():
            return 0
        db = sqlite3.connect(f"file:{self.outbox}?mode=ro", uri=True, timeout=30)
        try:
            row = db.execute("SELECT value FROM meta WHERE key = 'evicted'").fetchone()
        finally:
            db.close()
        return int(row[0]) if row else 0

    def pending(self) -> int:
        if not self.outbox.exists():
            return 0
        db = sqlite3.connect(f"file:{self.outbox}?mode=ro", uri=True, timeout=30)
        try:
            return int(db.execute("SELECT count(*) FROM outbox").fetchone()[0])
        finally:
            db.close()


@dataclass
class SelfExit:
    """A processor or an agent that ended without the schedule stopping it."""
    part: str
    code: int
    peer_lost: bool  # its log says it lost another process of the cluster

    def __str__(self) -> str:
        return f"{self.part} exited by itself with code {self.code}" + (
            " (lost another process of the cluster)" if self.peer_lost else "")


class SmallDisk:
    """A tmpfs of `size` mounted on `path` (mounting needs root), and a file that fills it:
    a node's state disk that logs or anything else fill to the last block, then free."""

    def __init__(self, path: Path, size: str) -> None:
        self.path = path
        self.size = size
        self.filler: Path | None = None
        self.fills = 0

    def __enter__(self) -> SmallDisk:
        self.path.mkdir(parents=True, exist_ok=True)
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={self.size},mode=0700", "tmpfs",
                                  str(self.path)], capture_output=True, text=True, check=False)
        if mounted.returncode != 0:
            raise ChaosError(f"cannot mount a tmpfs on {self.path} (the full-disk fault needs root): "
                             f"{mounted.stderr.strip()}")
        return self

    def __exit__(self, *exc: object) -> None:
        # lazy: an agent left running (its stop failed) must not keep the mount for good
        subprocess.run(["umount", "-l", str(self.path)], check=False, capture_output=True)

    def fill(self) -> None:
        self.filler = fill(self.path)
        self.fills += 1

    def free(self) -> None:
        if self.filler is not None:
            self.filler.unlink(missing_ok=True)


class Rig:
    def __init__(self, workdir: Path, agents: int, sensors: int, period_s: float,
                 detect: bool, flow: dict[str, object] | None = None, processes: int = 1,
                 disks: int = 0, disk_size: str = DISK_SIZE, outbox: dict[str, Any] | None = None,
                 clocks: int = 0) -> None:
        self.workdir = workdir
        # the outbox keys (e.g. a small max_rows) for the nodes on a small disk
        self.nodes = [Node(i, sensors, period_s, workdir, outbox if i < disks else None)
                      for i in range(agents)]
        for node in self.nodes[:clocks]:
            node.offset_file = workdir / f"{node.name}.clock-offset"
        self.clock_steps: dict[str, int] = {}  # "clock-agent-i" -> how many steps
        self.disk_size = disk_size
        self.disks: dict[str, SmallDisk] = {}  # "disk-agent-i" -> its disk, for the first `disks` nodes
        self._disk_count = disks
        self.detect = detect
        self.flow = flow or {}
        self.stack: PrivateStack | None = None
        self.layout: Layout | None = None
        self.parts = processor_parts(processes)  # "processor", or "processor-0", "processor-1"...
        self.processors: dict[str, Processor] = {}
        self.self_exits: list[SelfExit] = []
        self._exited_at: dict[str, float] = {}  # part -> when the supervisor saw it end
        self._log_from: dict[str, int] = {}  # part -> its log's size at its last start
        self.proxies: dict[str, PartitionProxy] = {}
        self.witnesses: list[Witness] = []
        self.down: dict[str, str] = {}  # part -> how it went down
        self.ingest_kills = 0
        self._exits = contextlib.ExitStack()

    # -- bring-up and tear-down -------------------------------------------------------

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.stack = PrivateStack.start(self.workdir / "home", [(SITE, n.name) for n in self.nodes])
        self._exits.callback(self.stack.stop)
        self.layout = Layout(self.stack.config.home)
        info = self.stack.info
        cloud_mqtt = info.mqtt("cloud")
        self.proxies["link-ingest"] = self._exits.enter_context(
            PartitionProxy(cloud_mqtt.host, cloud_mqtt.port))
        self.proxies["link-influx"] = self._exits.enter_context(proxy_for_url(info.influx_url))
        flow = dict(self.flow)
        if len(self.parts) > 1:
            flow["addresses"] = [f"127.0.0.1:{port}" for port in free_ports(len(self.parts))]
            flow["process_id"] = 0  # each process's own --process-id overrides it
        config = cloud_config(info, self.workdir / "cloud-state", detect=self.detect, flow=flow)
        config["mqtt"]["port"] = self.proxies["link-ingest"].port
        config["mqtt"]["keepalive_s"] = INGEST_KEEPALIVE_S
        config["influx"]["url"] = f"http://127.0.0.1:{self.proxies['link-influx'].port}"
        config["influx"]["timeout_s"] = INFLUX_TIMEOUT_S
        self.stack.init_database(config)
        for i, part in enumerate(self.parts):
            cluster = len(self.parts) > 1
            proc = Processor(config, self.workdir, "cloud" if not cluster else f"cloud-p{i}",
                             ("--process-id", str(i)) if cluster else ())
            self.processors[part] = proc
            self._exits.callback(proc.stop)
            self._start_processor(part)
        for proc in self.processors.values():
            proc.wait_subscribed()
        for node in self.nodes:
            witness = Witness(info, SITE, node.name)
            witness.start()
            self._exits.callback(witness.stop)
            self.witnesses.append(witness)
            proxy = self._exits.enter_context(PartitionProxy(info.mqtt_host, info.mqtt_port))
            self.proxies[f"link-{self._part(node)}"] = proxy
            self._exits.callback(node.stop_sensors)
            if node.index < self._disk_count:  # unmounted after the agent's stop (below)
                self.disks[f"disk-{self._part(node)}"] = self._exits.enter_context(
                    SmallDisk(node.state_dir, self.disk_size))
            node.configure(self.stack, proxy)
            self._exits.callback(node.term)
            node.start()

    def close(self) -> None:
        self._thaw_all()
        self._exits.close()

    def __enter__(self) -> Rig:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @staticmethod
    def _part(node: Node) -> str:
        return f"agent-{node.index}"

    # -- the faults ---------------------------------------------------------------------

    def apply(self, step: Step) -> None:
        part, action = step.part, step.action
        if part == INGEST:
            self._kill_ingest()
            return
        if action in RESTORE.values():
            self._restore(part, self.down.pop(part))
        else:
            self._break(part, action, step.grace_s)
            if action == "step":
                self._step_clock(part, step.step_s)
            self.down[part] = action

    def restore_all(self) -> list[Step]:
        done = []
        for part, how in sorted(self.down.items()):
            self._restore(part, how)
            done.append(Step(0.0, part, RESTORE[how]))
        self.down.clear()
        return done

    def _node(self, part: str) -> Node:
        return self.nodes[int(part.rsplit("-", 1)[1])]

    def _server_pid(self, part: str) -> int:
        assert self.layout is not None
        pid = (mosquitto.running_pid(self.layout) if part == "broker"
               else influxd.running_pid(self.layout))
        if pid is None:
            raise ChaosError(f"the {part} is not running")
        return pid

    def _break(self, part: str, action: str, grace_s: float = 0.0) -> None:
        k = kind(part)
        if k == "clock":
            pass  # the step's amount: _step_clock
        elif k == "disk":
            self.disks[part].fill()
        elif k == "link":
            self.proxies[part].partition()
        elif k in ("broker", "influxdb"):
            pid = self._server_pid(part)
            if action == "freeze":
                os.kill(pid, signal.SIGSTOP)
            else:
                os.kill(pid, signal.SIGTERM if action == "term" else signal.SIGKILL)
                wait_until(lambda: not is_alive(pid), STOP_WAIT_S, f"the {part} to stop")
        elif k == "processor":
            proc = self.processors[part]
            assert proc.proc is not None
            self._exited_at.pop(part, None)  # down now: the schedule brings it back, not a restart
            # A process of a cluster may have ended by itself (its peer lost) and be waiting
            # for its restart: there is then nothing left to signal.
            with contextlib.suppress(ProcessLookupError):
                if action == "term":
                    proc.stop()
                elif action == "term-kill":
                    _term_then_kill(proc.proc, part, grace_s)
                elif action == "freeze":
                    os.killpg(proc.proc.pid, signal.SIGSTOP)
                elif action == "kill-main":
                    os.kill(proc.proc.pid, signal.SIGKILL)
                    proc.proc.wait(STOP_WAIT_S)
                else:
                    os.killpg(proc.proc.pid, signal.SIGKILL)
                    proc.proc.wait(STOP_WAIT_S)
        else:
            node = self._node(part)
            self._exited_at.pop(part, None)  # down now: the schedule brings it back
            if action == "freeze":
                node.signal(signal.SIGSTOP)
            elif action == "term":
                node.term()
            elif action == "term-kill":
                assert node.proc is not None
                _term_then_kill(node.proc, part, grace_s)
            else:
                node.kill()

    def _restore(self, part: str, how: str) -> None:
        k = kind(part)
        assert self.stack is not None
        assert self.layout is not None
        if k == "clock":
            self._step_clock(part, 0.0)  # NTP's correction: a step back to the true time
        elif k == "disk":
            self.disks[part].free()
        elif k == "link":
            self.proxies[part].heal()
        elif k in ("broker", "influxdb"):
            if how == "freeze":
                os.kill(self._server_pid(part), signal.SIGCONT)
            elif k == "broker":
                mosquitto.start(self.stack.config, self.layout, mosquitto.recorded_argv(self.layout),
                                mosquitto.recorded_auth(self.layout))
            else:
                influxd.start(self.stack.config, self.layout)
        elif k == "processor":
            proc = self.processors[part]
            if how == "freeze":
                assert proc.proc is not None
                with contextlib.suppress(ProcessLookupError):  # ended before (supervise restarts it)
                    os.killpg(proc.proc.pid, signal.SIGCONT)
            else:
                self._start_processor(part)
        else:
            node = self._node(part)
            if how == "freeze":
                node.signal(signal.SIGCONT)
            else:
                node.start()

    def _thaw_all(self) -> None:
        """Frozen processes cannot be stopped: thaw them before anything stops them."""
        for part, how in list(self.down.items()):
            if how == "freeze":
                with contextlib.suppress(ChaosError, ProcessLookupError):
                    self._restore(part, how)
                del self.down[part]

    def _step_clock(self, part: str, offset_s: float) -> None:
        offset_file = self._node(part).offset_file
        assert offset_file is not None, f"{part}: the agent does not run on a stepped clock"
        write_offset(offset_file, offset_s)
        self.clock_steps[part] = self.clock_steps.get(part, 0) + 1

    def _start_processor(self, part: str) -> None:
        proc = self.processors[part]
        self._log_from[part] = proc.log_path.stat().st_size if proc.log_path.exists() else 0
        self._exited_at.pop(part, None)
        proc.start()

    def supervise(self) -> None:
        """What systemd's Restart=always does for the processor's and the agents' units:
        one that ended without the schedule stopping it is noted (SelfExit) and started
        again RESTART_S after. Called often by the soak, between its steps and while it drains."""
        now = time.monotonic()
        for part, proc in self.processors.items():
            if part in self.down or proc.proc is None:
                continue
            code = proc.proc.poll()
            if code is None:
                continue
            if part not in self._exited_at:
                self._exited_at[part] = now
                self.self_exits.append(SelfExit(part, code, PEER_LOST in proc.log()[self._log_from[part]:]))
            elif now - self._exited_at[part] >= RESTART_S:
                self._start_processor(part)
        for node in self.nodes:
            part = self._part(node)
            if part in self.down or node.proc is None or (code := node.proc.poll()) is None:
                continue
            if part not in self._exited_at:
                self._exited_at[part] = now
                self.self_exits.append(SelfExit(part, code, False))
            elif now - self._exited_at[part] >= RESTART_S:
                del self._exited_at[part]
                node.start()

    def unexpected_exits(self) -> list[SelfExit]:
        """Self exits that are not a process of a cluster leaving on a lost peer (code 3)."""
        return [e for e in self.self_exits
                if not (len(self.parts) > 1 and e.code == EXIT_PEER_LOST and e.peer_lost)]

    def _live_processors(self) -> list[int]:
        return [p.proc.pid for p in self.processors.values()
                if p.proc is not None and p.proc.poll() is None]

    def _ingests(self) -> dict[int, int]:
        """pid -> parent pid of every ingest process of this rig's processors' configs."""
        configs = {str(p.config_path).encode() for p in self.processors.values()}
        found = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            with contextlib.suppress(OSError):
                args = (entry / "cmdline").read_bytes().split(b"\0")
                if b"ingest" in args and configs & set(args):
                    stat = (entry / "stat").read_text()
                    found[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
        return found

    def ingest_children(self) -> list[int]:
        parents = {p.proc.pid for part, p in self.processors.items()
                   if part not in self.down and p.proc is not None and p.proc.poll() is None}
        return [pid for pid, ppid in self._ingests().items() if ppid in parents]

    def stray_ingests(self) -> list[int]:
        """Ingest processes whose processor is gone (ended with it, or soon after: EOF)."""
        parents = set(self._live_processors())
        return [pid for pid, ppid in self._ingests().items() if ppid not in parents]

    def _kill_ingest(self) -> None:
        for pid in self.ingest_children():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
                self.ingest_kills += 1

    def log_tail(self, part: str) -> str:
        """The end of a processor's or an agent's log."""
        if part in self.processors:
            return self.processors[part].log()[-3000:]
        path = self._node(part).log_path
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def witnessed(self) -> Iterator[tuple[str, Any]]:
        for node, witness in zip(self.nodes, self.witnesses, strict=True):
            with witness._lock:
                readings = list(witness.readings)
            for r in readings:
                yield node.name, r




def wait_until(check: Callable[[], bool], timeout_s: float, what: str, every_s: float = 0.02) -> None:
    """Polls `check` every `every_s` until true; ChaosError naming `what` at the deadline."""
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise ChaosError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(every_s)


def _term_then_kill(proc: subprocess.Popen[bytes], part: str, grace_s: float) -> None:
    """SIGTERM to the process group, SIGKILL `grace_s` later if it has not ended by then."""
    if stop_group(proc, grace_s, kill_wait_s=STOP_WAIT_S) is None:
        raise ChaosError(f"the {part} outlived its SIGKILL by {STOP_WAIT_S} s")
