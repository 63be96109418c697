"""The real parts the soak breaks and brings back.

A private stack (bench.pipeline.privstack: Mosquitto and InfluxDB on free ports), the
processor (`urbanpulse cloud run`, its ingest a child process), and `agents` edge agents
(`urbanpulse edge run`, each its own process, on-disk outbox, `delivery = "cloud"`), each
reading emulated SDS011s on pseudo-terminals. Every link that can be partitioned runs
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
from pathlib import Path
from typing import Any

from bench.chaos.errors import ChaosError
from bench.chaos.plan import INGEST, RESTORE, Step, kind
from bench.pipeline.privstack import PrivateStack, Processor, cloud_config
from edge.agent import OUTBOX_FILE
from firmware_bridge.protocols.sds011.emulator import Sds011Emulator
from tests.conftest import Collector, node_config
from tests.netfault import PartitionProxy, proxy_for_url
from urbanpulse.stack import StackInfo, influxd, mosquitto
from urbanpulse.stack.layout import Layout
from urbanpulse.stack.process import is_alive

SITE = "hn-chaos"
EDGE_KEEPALIVE_S = 2
INGEST_KEEPALIVE_S = 5  # the lowest the cloud config takes
INFLUX_TIMEOUT_S = 2.0
ACK_TIMEOUT_S = 3.0
ACK_TIMEOUT_MAX_S = 6.0
STOP_WAIT_S = 30.0


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

    def __init__(self, index: int, sensors: int, period_s: float, workdir: Path) -> None:
        self.index = index
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
                           delivery="cloud", ack_timeout_s=ACK_TIMEOUT_S)
        text = text.replace(f"port = {creds.port}\n", f"port = {proxy.port}\n"
                            f"keepalive_s = {EDGE_KEEPALIVE_S}\nack_timeout_max_s = {ACK_TIMEOUT_MAX_S}\n", 1)
        self.config_path.write_text(text)

    def start(self) -> None:
        with self.log_path.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "urbanpulse.cli", "edge", "run", "--config", str(self.config_path)],
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)

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

    def pending(self) -> int:
        if not self.outbox.exists():
            return 0
        db = sqlite3.connect(f"file:{self.outbox}?mode=ro", uri=True, timeout=30)
        try:
            return int(db.execute("SELECT count(*) FROM outbox").fetchone()[0])
        finally:
            db.close()


class Rig:
    def __init__(self, workdir: Path, agents: int, sensors: int, period_s: float,
                 detect: bool, flow: dict[str, object] | None = None) -> None:
        self.workdir = workdir
        self.nodes = [Node(i, sensors, period_s, workdir) for i in range(agents)]
        self.detect = detect
        self.flow = flow or {}
        self.stack: PrivateStack | None = None
        self.layout: Layout | None = None
        self.processor: Processor | None = None
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
        config = cloud_config(info, self.workdir / "cloud-state", detect=self.detect,
                              flow=dict(self.flow))
        config["mqtt"]["port"] = self.proxies["link-ingest"].port
        config["mqtt"]["keepalive_s"] = INGEST_KEEPALIVE_S
        config["influx"]["url"] = f"http://127.0.0.1:{self.proxies['link-influx'].port}"
        config["influx"]["timeout_s"] = INFLUX_TIMEOUT_S
        self.stack.init_database(config)
        self.processor = Processor(config, self.workdir)
        self._exits.callback(self.processor.stop)
        self.processor.start()
        self.processor.wait_subscribed()
        for node in self.nodes:
            witness = Witness(info, SITE, node.name)
            witness.start()
            self._exits.callback(witness.stop)
            self.witnesses.append(witness)
            proxy = self._exits.enter_context(PartitionProxy(info.mqtt_host, info.mqtt_port))
            self.proxies[f"link-{self._part(node)}"] = proxy
            self._exits.callback(node.stop_sensors)
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
        if action in ("start", "thaw", "heal"):
            self._restore(part, self.down.pop(part))
        else:
            self._break(part, action, step.grace_s)
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
        if k == "link":
            self.proxies[part].partition()
        elif k in ("broker", "influxdb"):
            pid = self._server_pid(part)
            if action == "freeze":
                os.kill(pid, signal.SIGSTOP)
            else:
                os.kill(pid, signal.SIGTERM if action == "term" else signal.SIGKILL)
                wait_until(lambda: not is_alive(pid), STOP_WAIT_S, f"the {part} to stop")
        elif k == "processor":
            assert self.processor is not None
            assert self.processor.proc is not None
            if action == "term":
                self.processor.stop()
            elif action == "term-kill":
                _term_then_kill(self.processor.proc, grace_s)
            elif action == "freeze":
                os.killpg(self.processor.proc.pid, signal.SIGSTOP)
            elif action == "kill-main":
                os.kill(self.processor.proc.pid, signal.SIGKILL)
                self.processor.proc.wait(STOP_WAIT_S)
            else:
                os.killpg(self.processor.proc.pid, signal.SIGKILL)
                self.processor.proc.wait(STOP_WAIT_S)
        else:
            node = self._node(part)
            if action == "freeze":
                node.signal(signal.SIGSTOP)
            elif action == "term":
                node.term()
            elif action == "term-kill":
                assert node.proc is not None
                _term_then_kill(node.proc, grace_s)
            else:
                node.kill()

    def _restore(self, part: str, how: str) -> None:
        k = kind(part)
        assert self.stack is not None
        assert self.layout is not None
        if k == "link":
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
            assert self.processor is not None
            if how == "freeze":
                assert self.processor.proc is not None
                os.killpg(self.processor.proc.pid, signal.SIGCONT)
            else:
                self.processor.start()
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

    def _ingests(self) -> dict[int, int]:
        """pid -> parent pid of every ingest process of this rig's processor config."""
        if self.processor is None:
            return {}
        config = str(self.processor.config_path).encode()
        found = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            with contextlib.suppress(OSError):
                args = (entry / "cmdline").read_bytes().split(b"\0")
                if b"ingest" in args and config in args:
                    stat = (entry / "stat").read_text()
                    found[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
        return found

    def ingest_children(self) -> list[int]:
        if self.processor is None or self.processor.proc is None:
            return []
        parent = self.processor.proc.pid
        return [pid for pid, ppid in self._ingests().items() if ppid == parent]

    def stray_ingests(self) -> list[int]:
        """Ingest processes whose processor is gone (ended with it, or soon after: EOF)."""
        parent = self.processor.proc.pid if self.processor and self.processor.proc else None
        return [pid for pid, ppid in self._ingests().items() if ppid != parent]

    def _kill_ingest(self) -> None:
        for pid in self.ingest_children():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
                self.ingest_kills += 1

    def processor_log_tail(self) -> str:
        return self.processor.log()[-3000:] if self.processor is not None else ""

    def processor_alive(self) -> bool:
        return (self.processor is not None and self.processor.proc is not None
                and self.processor.proc.poll() is None)

    def witnessed(self) -> Iterator[tuple[str, Any]]:
        for node, witness in zip(self.nodes, self.witnesses, strict=True):
            with witness._lock:
                readings = list(witness.readings)
            for r in readings:
                yield node.name, r


def _term_then_kill(proc: subprocess.Popen[bytes], grace_s: float) -> None:
    """SIGTERM to the process group, SIGKILL `grace_s` later if it has not ended by then."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(STOP_WAIT_S)


def wait_until(check: Callable[[], bool], timeout_s: float, what: str, every_s: float = 0.02) -> None:
    """Polls `check` every `every_s` until true; ChaosError naming `what` at the deadline."""
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise ChaosError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(every_s)
