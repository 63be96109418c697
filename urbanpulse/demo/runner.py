"""Brings the demo city up: stack, database, cloud processor, the simulation, the live
nodes (emulated devices and real edge agents), the lightweight rest of the city, and the
live summary; writes the run's ground truth at the end."""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cloud.config import Retention
from cloud.ingest import SUBSCRIBED
from cloud.initdb import init_db
from cloud.stack_config import cloud_config_for_stack, to_toml
from edge.agent import Agent
from edge.config import load_config
from edge.logs import JsonFormatter
from urbanpulse.clock import to_epoch_ns
from urbanpulse.demo.city_publisher import CityPublisher
from urbanpulse.demo.demo_events import demo_events
from urbanpulse.demo.found import findings, read_cloud_events
from urbanpulse.demo.found import render as render_found
from urbanpulse.demo.gateway_site import GatewaySite, choose_site
from urbanpulse.demo.live import (
    SERIAL_PERIOD_S,
    LiveNode,
    active_high,
    choose_live,
    lightweight_nodes,
    live_sensor_keys,
    node_config,
)
from urbanpulse.demo.live import to_toml as node_toml
from urbanpulse.demo.pins import BeamTestOutput, PinPlayer, PinWire, pin_factory
from urbanpulse.demo.serial_devices import SerialDevice, pm_feed, start_sds011
from urbanpulse.demo.summary import collect, ledger, render
from urbanpulse.errors import UrbanpulseError
from urbanpulse.influx_http import InfluxError, InfluxHTTP
from urbanpulse.mqtt import close_client, connect_and_wait, make_client
from urbanpulse.simulate import City, Event, SimClock, Simulation
from urbanpulse.simulate.scenario import merge_events, write_ground_truth
from urbanpulse.stack import StackConfig, StackInfo, add_node, up
from urbanpulse.stack.lifecycle import resolve_config
from urbanpulse.stack.parent_death import ends_with_parent
from urbanpulse.stack.process import command_line, stop_group, stop_pid

if TYPE_CHECKING:
    import paho.mqtt.client as paho

REFRESH_S = 2.0
HISTORY_S = 300.0
PUBACK_WAIT_S = 10.0
# The processor's start (Bytewax, recovery store, ingest child) until its ingest subscribed.
SUBSCRIBE_WAIT_S = 120.0
SUBSCRIBE_POLL_S = 0.2
CITY_NODES = ("all", "live")
# In the demo directory: the pid of the processor a demo started, until it stopped it.
PROCESSOR_PIDFILE = "cloud.pid"
PROCESSOR_STOP_S = 20.0  # its SIGTERM: the last epoch written, its ingest child's commit
TRUTH_DIR = "ground_truth"  # in the demo directory: each run's ground truth, by its start
FOUND_HINT = ("A longer run on a fresh stack finds more: about 6 minutes for the stuck CO2 and "
              "the pollution spike, 28 for the second incident; a later run on the same stack "
              "finds less, its detectors having seen the same events (docs/demo.md, \"Injected "
              "events and ground truth\"). The ground truth file below lists every event injected.")
# A later run on the same stack: its processor kept its detectors' state (<home>/demo/cloud/).
LATER_RUN_HINT = ("This stack ran the demo before ({runs}): the processor kept its detectors' "
                  "state, which has seen the same events at the same minutes of each run (the "
                  "spike rule raises one spike per field an hour, the anomaly detectors learnt "
                  "the pollution spike and the first incident, and the stuck CO2 needs 10 "
                  "readings of this run), so a later run finds less. For "
                  "the times in docs/demo.md (\"Injected events and ground truth\"), start "
                  "from a fresh stack: `{command} stack down`, then remove {home}, or give the "
                  "demo a home of its own (URBANPULSE_HOME). The ground truth file below lists "
                  "every event injected.")


class DemoError(UrbanpulseError):
    pass


@dataclass(frozen=True)
class DemoOptions:
    duration_s: float | None
    seed: int = 1
    city: Path | None = None
    city_nodes: str = "all"
    gateway: bool = True  # the live hospital's nodes behind a site broker and a gateway


class _Agents(threading.Thread):
    """The live nodes' edge agents, on one asyncio loop in a thread of their own."""

    def __init__(self, agents: list[Agent]) -> None:
        super().__init__(name="demo-agents", daemon=True)
        self.agents = agents
        self.loop = asyncio.new_event_loop()
        self.stop_event = asyncio.Event()

    def run(self) -> None:
        asyncio.set_event_loop(self.loop)

        async def all_agents() -> None:
            await asyncio.gather(*(a.run(self.stop_event) for a in self.agents))

        self.loop.run_until_complete(all_agents())

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.stop_event.set)
        self.join(30)


def run_demo(options: DemoOptions) -> int:
    city = City.load(options.city) if options.city is not None else City.load()
    live = choose_live(city)
    config = resolve_config()
    print(f"urbanpulse demo: {city.name}, {len(city.nodes)} nodes; starting the local stack in "
          f"{config.home} ...", flush=True)
    info = up(config)
    admin = info.influx("admin")
    with InfluxHTTP(admin.url, admin.username, admin.password()) as client:
        init_db(client, info.database, Retention("30d", "400d", "INF"))
    demo_dir = config.home / "demo"
    demo_dir.mkdir(parents=True, exist_ok=True)
    _log_to(demo_dir / "agents.log")

    # The city has been running for HISTORY_S when the demo starts: the lightweight
    # publisher back-fills those minutes, so every bed, lane and station has reported.
    injected = demo_events(city, live, HISTORY_S)
    events = merge_events(city.events, injected)
    run_start = datetime.now(UTC)
    sim = Simulation(city, seed=options.seed, start=run_start - timedelta(
        seconds=HISTORY_S), speed=1.0, events=events)
    clock = sim.clock(at_offset=HISTORY_S)
    live_keys = live_sensor_keys(live)
    departments = {f"{h.site}/{d.node}" for h in city.hospitals for d in h.paraclinical}
    light, unreported = lightweight_nodes(sim.nodes, live)
    if options.city_nodes != "all":
        light = []
    chosen = choose_site(live) if options.gateway else None
    gateway = None if chosen is None else GatewaySite.plan(config.home, demo_dir, *chosen)
    _print_plan(live, light, unreported, options.city_nodes, gateway)
    seq_file = demo_dir / "city_seq.json"
    truth = demo_dir / "ground_truth.jsonl"  # the latest run's; each run's in TRUTH_DIR
    run_truth = demo_dir / TRUTH_DIR / f"{run_start.strftime('%Y%m%dT%H%M%SZ')}.jsonl"
    reader = info.influx("reader")
    earlier = earlier_runs(demo_dir)
    code = 0
    with ExitStack() as cleanup:
        cloud_log = demo_dir / "cloud.log"
        pidfile = demo_dir / PROCESSOR_PIDFILE
        if stop_earlier_processor(pidfile, demo_dir / "cloud.toml"):
            print("urbanpulse demo: stopped the processor an earlier demo left running", flush=True)
        log_start = cloud_log.stat().st_size if cloud_log.exists() else 0
        cloud = _start_cloud(info, demo_dir)
        pidfile.write_text(f"{cloud.pid}\n", encoding="utf-8")
        cleanup.callback(_stop_process, cloud, pidfile)
        if gateway is not None:
            # Started while the processor starts; stopped after the agents (the cleanup
            # runs backwards), whose last batches and statuses it relays.
            cleanup.callback(gateway.stop)
            gateway.start(config, info, ends_with_demo=True)
        _describe(demo_dir / "nodes.json", sim, live, light, gateway)  # its port chosen now
        # The lightweight nodes publish without resending (QoS 1 to the broker only): on a
        # fresh stack the broker would drop what they send before the ingest's session has
        # its subscription, the back-filled minutes first.
        _wait_subscribed(cloud, cloud_log, log_start)
        if gateway is not None:
            gateway.wait_relaying()
        serial = _start_serial(sim, clock, live, demo_dir / "dev")
        for device in serial:
            cleanup.callback(device.stop)
        publisher = None
        backfilled_s = 0.0
        if light:
            clients = _city_clients(config, light)
            cleanup.callback(_disconnect_all, clients)
            publisher = CityPublisher(sim, clock, clients, live_keys, seq_file)
            # what an earlier run on this stack published is not sent again
            backfilled_s = HISTORY_S - min(HISTORY_S, max(
                0.0, (publisher.not_before_ns - to_epoch_ns(sim.start)) / 1e9))
            publisher.publish_until(clock.offset())
            publisher.start()
            cleanup.callback(_stop_publisher, publisher)
        factories, player = _wire_pins(sim, clock, live)
        player.prime(clock.offset())
        agents = []
        behind = {n.key for n in gateway.nodes} if gateway is not None else set()
        for node in live:
            agents.append(_agent(config, sim, clock, node, factories[node.key], demo_dir,
                                 {d.sensor: d.port for d in serial if d.node == node.key},
                                 gateway.node_mqtt(node) if gateway is not None
                                 and node.key in behind else None))
        runner = _Agents(agents)
        runner.start()
        cleanup.callback(runner.stop)
        player.start()
        cleanup.callback(player.stop)

        started = time.monotonic()
        print(f"logs: {demo_dir / 'cloud.log'}, {demo_dir / 'agents.log'}"
              + (f", {gateway.log}, {gateway.broker.log}" if gateway is not None else ""),
              flush=True)
        with InfluxHTTP(reader.url, reader.username, reader.password()) as client:
            try:
                while options.duration_s is None or time.monotonic() - started < options.duration_s:
                    problem = _failure(cloud, runner, player, publisher, gateway)
                    if problem:
                        print(f"urbanpulse demo: {problem}", file=sys.stderr)
                        code = 1
                        break
                    for device in serial:
                        device.device.follow()
                    text = render(collect(client, info.database), time.monotonic() - started,
                                  options.duration_s, {f"{n.site}/{n.node}" for n in live},
                                  departments, _gateway_lines(gateway, client, info.database))
                    if sys.stdout.isatty():
                        sys.stdout.write("\x1b[H\x1b[2J")
                    print(text, flush=True)
                    time.sleep(REFRESH_S)
            except KeyboardInterrupt:
                print("\nstopping ...", flush=True)
    if gateway is not None:
        print(gateway.closing())
    until = clock.offset()
    truth_events = sim.ground_truth(until)
    run_truth.parent.mkdir(exist_ok=True)
    count = write_ground_truth(run_truth, truth_events, sim.timebase)
    shutil.copyfile(run_truth, truth)
    print(f"simulated {until:.0f} s from {sim.start.isoformat()} (seed {options.seed}, "
          f"{backfilled_s:.0f} s of it back-filled); "
          f"pins: {player.edges} edges driven, at most {player.max_late_s * 1000:.1f} ms late")
    command = _command()
    _print_found(reader.url, reader.username, reader.password(), info.database, sim,
                 truth_events, [e for e in injected if e.start_s >= until],
                 found_hint(earlier, command, config.home))
    print(f"ground truth ({count} events): {run_truth} (also {truth}, the latest run's)")
    print(f"done. The data stays in InfluxDB at {info.influx_url} (database {info.database}); "
          f"reader credentials: {reader.password_file}. `{command} stack down` stops the stack.")
    return code


def earlier_runs(demo_dir: Path) -> list[str] | None:
    """Before a run: the starts of the earlier runs on this stack whose ground truth is in
    `demo_dir` (oldest first), or None when the processor has no state kept from one
    (`<home>/demo/cloud/` absent or empty: a fresh stack)."""
    state = demo_dir / "cloud"
    runs = sorted(p.stem for p in (demo_dir / TRUTH_DIR).glob("*.jsonl"))
    if runs or (state.is_dir() and any(state.iterdir())):
        return runs
    return None


def found_hint(earlier: list[str] | None, command: str, home: Path) -> str:
    """What the closing summary says of the events not found: on a later run on the same
    stack (`earlier`, from earlier_runs) why it finds less and how to start afresh."""
    if earlier is None:
        return FOUND_HINT
    if not earlier:
        runs = "its processor's state is in the demo directory"
    else:
        runs = (f"{len(earlier)} run{'s' if len(earlier) > 1 else ''}, the last started "
                f"{earlier[-1]}")
    return LATER_RUN_HINT.format(runs=runs, command=command, home=home)


def _print_found(url: str, username: str, password: str, database: str, sim: Simulation,
                 truth: list[Event], later: list[Event], hint: str) -> None:
    """The run's injected events and which of them the cloud found (found.py)."""
    try:
        with InfluxHTTP(url, username, password) as client:
            rows = read_cloud_events(client, database, sim.start)
    except InfluxError as exc:
        print(f"injected events: the cloud's events could not be read ({exc})")
        return
    found = findings(truth, sim.timebase, rows)
    print("injected events (minutes:seconds into this run; found: the cloud's first event of "
          "the kind on the target, raw.events):")
    for line in render_found(found, later, sim.timebase, HISTORY_S):
        print(line)
    missed = sum(1 for f in found if f.found_ns is None)
    print(f"{len(found) - missed} of {len(found)} found." + (
        f" {hint}" if missed or later else ""))


def _command() -> str:
    """How to call `urbanpulse` from here: the script of the demo's virtualenv, which is
    not on PATH unless it is activated (`.venv/bin/urbanpulse` after scripts/demo)."""
    script = Path(sys.executable).parent / "urbanpulse"
    if not script.exists():
        return "urbanpulse"
    on_path = shutil.which("urbanpulse")
    if on_path is not None and Path(on_path).resolve() == script.resolve():
        return "urbanpulse"
    try:
        return str(script.relative_to(Path.cwd()))
    except ValueError:
        return str(script)


def _log_to(path: Path) -> None:
    handler = logging.FileHandler(path)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)


def _describe(path: Path, sim: Simulation, live: list[LiveNode],
              light: list[tuple[str, str]], gateway: GatewaySite | None) -> None:
    doc: dict[str, Any] = {
        "start": sim.start.isoformat(),
        "seed": sim.seed,
        "live": [{"site": n.site, "node": n.node, "label": n.label,
                  "sensors": {s.id: {**s.pins, **s.outputs} or "serial"
                              for s in n.sensors}} for n in live],
        "lightweight": [f"{site}/{node}" for site, node in light],
        "gateway": None if gateway is None else {
            "site": gateway.site, "user": gateway.user,
            "nodes": [n.node for n in gateway.nodes],
            "site_broker": f"{gateway.broker.bind}:{gateway.broker.port}"},
    }
    path.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")


def _print_plan(live: list[LiveNode], light: list[tuple[str, str]],
                unreported: list[tuple[str, str, str]], mode: str,
                gateway: GatewaySite | None) -> None:
    print("live nodes (real edge agents, emulated SDS011 on ptys, gpiozero mock pins):")
    for n in live:
        drivers: dict[str, int] = {}
        for s in n.sensors:
            drivers[s.spec.driver] = drivers.get(s.spec.driver, 0) + 1
        kinds = ", ".join(f"{c} {d}" for d, c in drivers.items())
        print(f"  {n.site + '/' + n.node:<26} {n.label} ({kinds})")
    if unreported:
        print("  not reported (no live device; one MQTT client per node): "
              + ", ".join(f"{site}/{node}/{sensor}" for site, node, sensor in unreported))
    if gateway is not None:
        print(f"  behind a site gateway: {', '.join(n.node for n in gateway.nodes)} of "
              f"{gateway.site} publish to its site broker (TLS, their own users), and "
              f"`urbanpulse gateway run` relays them to the stack's broker as {gateway.user}")
    if mode == "all":
        print(f"lightweight (simulator batches over MQTT): {len(light)} nodes")
    else:
        print("lightweight: off (--city-nodes live)")
    sys.stdout.flush()


def _wait_subscribed(cloud: subprocess.Popen[bytes], log_path: Path, log_start: int,
                     timeout_s: float = SUBSCRIBE_WAIT_S) -> None:
    """Until the processor started now logs its ingest's subscription (in `log_path`, after
    `log_start`): DemoError if it exits or takes longer than `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        with log_path.open("rb") as log:
            log.seek(log_start)
            if SUBSCRIBED.encode() in log.read():
                return
        if cloud.poll() is not None:
            raise DemoError(f"the processor exited with code {cloud.returncode} before its ingest "
                            f"subscribed: see {log_path}")
        if time.monotonic() > deadline:
            raise DemoError(f"the processor's ingest did not subscribe within {timeout_s:.0f} s: "
                            f"see {log_path}")
        time.sleep(SUBSCRIBE_POLL_S)


def _processor_argv(cloud_toml: Path) -> list[str]:
    return [sys.executable, "-m", "urbanpulse.cli", "cloud", "run", "--config", str(cloud_toml)]


def _start_cloud(info: StackInfo, demo_dir: Path) -> subprocess.Popen[bytes]:
    """The processor, in a session of its own (Ctrl-C in the terminal reaches the demo
    only, which stops it in order), sent SIGTERM by the kernel when the demo ends without
    stopping it (SIGKILL, the OOM killer; urbanpulse.stack.parent_death). To be called
    from the thread that stops it: the signal follows the thread that started it."""
    cloud_toml = demo_dir / "cloud.toml"
    # drained at the stop: the closing summary reads InfluxDB right after it, and a demo's
    # state is small enough for its last epoch (docs/cloud-config.md "Stopping")
    cloud_toml.write_text(to_toml(cloud_config_for_stack(info, demo_dir / "cloud", stop="drain")))
    with (demo_dir / "cloud.log").open("ab") as log:
        return subprocess.Popen(ends_with_parent(_processor_argv(cloud_toml)), stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)


def _is_processor(pid: int, cloud_toml: Path) -> bool:
    """`pid` is alive and runs the demo's processor on `cloud_toml` (a pid in a pidfile may
    have been reused by any process since)."""
    args = command_line(pid)
    return args is not None and args[1:] == _processor_argv(cloud_toml)[1:]


def stop_earlier_processor(pidfile: Path, cloud_toml: Path,
                           timeout_s: float = PROCESSOR_STOP_S) -> bool:
    """Stops the processor an earlier demo left running on `cloud_toml` (it holds the
    ingest's instance lock, so the new processor's ingest would wait for it): SIGTERM,
    SIGKILL after `timeout_s`. Only a process whose command line is that processor's is
    signalled (its ingest child stops when the pipe from it closes). True if one was
    running."""
    return stop_pid(pidfile, lambda pid: _is_processor(pid, cloud_toml),
                    "the processor an earlier demo left running", timeout_s=timeout_s)


@dataclass(frozen=True)
class _Serial:
    node: tuple[str, str]
    sensor: str
    device: SerialDevice

    @property
    def key(self) -> str:
        return f"{self.node[0]}/{self.node[1]}/{self.sensor}"

    @property
    def port(self) -> str:
        return self.device.emulator.port

    def stop(self) -> None:
        self.device.stop()


def _start_serial(sim: Simulation, clock: SimClock, live: list[LiveNode],
                  dev_dir: Path) -> list[_Serial]:
    out = []
    for n in live:
        for s in n.sensors:
            if s.spec.driver != "sds011":
                continue
            feed = pm_feed(sim, n.site, n.node, s.id, clock, SERIAL_PERIOD_S)
            device = start_sds011(s.id, feed, dev_dir / f"{n.site}.{n.node}.{s.id}")
            out.append(_Serial(n.key, s.id, device))
    return out


def _wire_pins(sim: Simulation, clock: SimClock,
               live: list[LiveNode]) -> tuple[dict[tuple[str, str], Any], PinPlayer]:
    factories: dict[tuple[str, str], Any] = {}
    wires: list[PinWire] = []
    tests: list[BeamTestOutput] = []
    for n in live:
        factory = factories[n.key] = pin_factory()
        for s in n.sensors:
            for name, line in s.pins.items():
                wires.append(PinWire(n.site, n.node, s.id, name, factory.pin(line),
                                     active_high(s)))
            if "test" in s.outputs:  # a door's test output (sensor_table: active high)
                tests.append(BeamTestOutput(n.site, n.node, s.id,
                                            factory.pin(s.outputs["test"]), active_high=True))
    return factories, PinPlayer(sim, clock, wires, tests)


def _agent(config: StackConfig, sim: Simulation, clock: SimClock, node: LiveNode, factory: Any,
           demo_dir: Path, ports: dict[str, str], mqtt: dict[str, Any] | None = None) -> Agent:
    """The node's agent, on the stack's broker unless `mqtt` says otherwise (a site
    broker's `[mqtt]`)."""
    creds = add_node(config, node.site, node.node)
    if mqtt is None:
        mqtt = {"host": creds.host, "port": creds.port, "ca_file": str(creds.ca_file),
                "username": creds.username, "password_file": str(creds.password_file)}
    state_dir = demo_dir / "state" / f"{node.site}.{node.node}"
    path = demo_dir / f"{node.site}.{node.node}.toml"
    path.write_text(node_toml(node_config(node, mqtt, state_dir, ports)), encoding="utf-8")
    return Agent(load_config(path), clock=sim.node_clock(node.site, node.node, clock),
                 pin_factory=_constant(factory))


def _city_clients(config: StackConfig,
                  nodes: list[tuple[str, str]]) -> dict[tuple[str, str], paho.Client]:
    clients: dict[tuple[str, str], paho.Client] = {}
    try:
        for site, node in nodes:
            creds = add_node(config, site, node)
            client = make_client(f"demo-city.{site}.{node}", creds, clean_start=True)
            connect_and_wait(client)
            clients[(site, node)] = client
    except UrbanpulseError:
        _disconnect_all(clients)
        raise
    return clients


def _disconnect_all(clients: dict[tuple[str, str], paho.Client]) -> None:
    for client in clients.values():
        close_client(client)


def _stop_publisher(publisher: CityPublisher) -> None:
    unacked = publisher.stop(PUBACK_WAIT_S)  # its numbers were saved before each publish
    print(f"lightweight: {publisher.readings} readings in {publisher.batches} batches"
          + (f", {unacked} batches not acknowledged by the broker" if unacked else ""))


def _gateway_lines(gateway: GatewaySite | None, client: InfluxHTTP, db: str) -> list[str]:
    if gateway is None:
        return []
    return gateway.summary_lines(ledger(client, db, gateway.site,
                                        [n.node for n in gateway.nodes]))


def _failure(cloud: subprocess.Popen[bytes], runner: _Agents, player: PinPlayer,
             publisher: CityPublisher | None, gateway: GatewaySite | None) -> str | None:
    if cloud.poll() is not None:
        return f"the cloud processor exited ({cloud.returncode}); see its log"
    problem = gateway.failure() if gateway is not None else None
    if problem is not None:
        return problem
    for name, thread in (("edge agents", runner), ("pin player", player),
                         ("lightweight publisher", publisher)):
        if thread is not None and not thread.is_alive():
            return f"the {name} stopped (its traceback is above)"
    return None


def _constant(value: Any) -> Callable[[], Any]:
    return lambda: value


def _stop_process(proc: subprocess.Popen[bytes], pidfile: Path) -> None:
    stop_group(proc, PROCESSOR_STOP_S)
    pidfile.unlink(missing_ok=True)
