"""`urbanpulse edge`: run the agent, check a config, show a node's local status, list or
clear the drivers' saved state."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

from edge.config import MqttConfig, load_config, machine_warnings
from edge.errors import EdgeError
from urbanpulse.cli_types import add_config_argument, config_of
from urbanpulse.clock import Clock
from urbanpulse.errors import ConfigError, UrbanpulseError

EXIT_OK = 0
EXIT_CONFIG = 2
EXIT_RUNTIME = 3

# Blocking calls the event loop hands off (serial ports open and close in a thread). The
# pool starts threads only when needed; four let two wedged USB adapters hang their opens
# without starving the other ports, where asyncio's default allows cores + 4.
IO_THREADS = 4
# `edge run --log-level`, any case (the unit and the docs say "info", "debug" as often)
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="urbanpulse edge", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    run = sub.add_parser("run", help="run the agent in the foreground (systemd-friendly)")
    run.add_argument("--config", type=Path, required=True)
    run.add_argument("--log-level", default="INFO", type=str.upper, choices=LOG_LEVELS,
                     metavar="LEVEL", help="the least severe log record written: "
                     f"{', '.join(LOG_LEVELS)}, in any case (default INFO)")
    check = sub.add_parser("check-config", help="validate a node config and exit")
    add_config_argument(check)
    status = sub.add_parser("status", help="outbox depth, MQTT link (last publish, last ack), resend "
                                           "backoff, clock (jumps, synchronised), drivers (their "
                                           "bad input counted), from local state")
    status.add_argument("--config", type=Path, required=True)
    status.add_argument("--json", action="store_true")
    state = sub.add_parser("driver-state", help="the drivers' saved state in the outbox (kiosk "
                                                "queue codes, door totals, ticket numbers): list "
                                                "it, or clear one driver's with --clear")
    state.add_argument("--config", type=Path, required=True)
    which = state.add_mutually_exclusive_group()
    which.add_argument("--driver", metavar="SENSOR_ID",
                       help="only this driver's state (its sensor id in the config)")
    which.add_argument("--key", help="only this key (as listed)")
    state.add_argument("--clear", action="store_true",
                       help="delete the state --driver or --key names (the driver then starts "
                            "afresh); refused while the agent runs; readings not yet sent stay")
    state.add_argument("--json", action="store_true")
    return p


def main(argv: list[str]) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.cmd == "check-config":
        config_of(parser, args)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if args.cmd == "check-config":
        # The file is valid; what this machine lacks is said, not refused (it may be checked
        # on a laptop for a node): the agent runs without a port or TLS file (its readings
        # kept), but stops (exit 2) without its GPIO backend.
        for warning in machine_warnings(config):
            print(f"warning: {warning}", file=sys.stderr)
        n = len(config.sensors)
        print(f"{args.config}: ok (node {config.node.site}/{config.node.id}, "
              f"{n} sensor{'' if n == 1 else 's'})")
        return EXIT_OK
    if args.cmd == "status":
        return _status(config.node.state_dir, args.json, config.mqtt)
    if args.cmd == "driver-state":
        return _driver_state(config.node.state_dir, args)
    return run_agent(config, args.log_level)


def run_agent(config: object, level: str, clock: Clock | None = None) -> int:
    """`urbanpulse edge run`: the agent until SIGTERM or SIGINT; its exit code. `clock`: the
    agent's wall clock (the system's unless given: the chaos soak steps one from outside)."""
    from edge.agent import Agent
    from edge.config import AgentConfig
    from edge.logs import setup_logging

    assert isinstance(config, AgentConfig)
    setup_logging(level)

    async def go() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.set_default_executor(ThreadPoolExecutor(IO_THREADS, thread_name_prefix="edge-io"))
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await Agent(config, clock=clock).run(stop)

    try:
        asyncio.run(go())
    except ConfigError as exc:  # found only at start-up (agent.clock_check on this machine)
        print(f"config error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except UrbanpulseError as exc:
        print(f"edge agent: {exc}", file=sys.stderr)
        return EXIT_RUNTIME
    return EXIT_OK


def _status(state_dir: Path, as_json: bool, mqtt_config: MqttConfig | None = None) -> int:
    from edge.agent import OUTBOX_FILE, STATE_FILE
    from edge.outbox import read_stats

    body: dict[str, object] = {"state_dir": str(state_dir)}
    state_file = state_dir / STATE_FILE
    if state_file.exists():
        state = json.loads(state_file.read_text(encoding="utf-8"))
        body["agent"] = state
        body["state_age_s"] = round(time.time() - state_file.stat().st_mtime, 1)
    if (state_dir / OUTBOX_FILE).exists():
        # read only: on a full disk the agent's way of opening it (schema, shared-memory
        # file) fails, and the reserve beside it is the agent's to give up
        try:
            stats = read_stats(state_dir / OUTBOX_FILE)
        except UrbanpulseError as exc:
            print(f"urbanpulse edge status: {exc}", file=sys.stderr)
            return EXIT_RUNTIME
        body["outbox"] = {"depth": stats.depth, "evicted": stats.evicted,
                          "oldest_age_s": None if stats.oldest_created_ns is None
                          else round(time.time() - stats.oldest_created_ns / 1e9, 1)}
    if as_json:
        print(json.dumps(body, indent=2, default=str))
    else:
        print(f"state dir: {state_dir}")
        print(f"outbox:    {_outbox_line(body.get('outbox'))}")
        agent = body.get("agent")
        if isinstance(agent, dict):
            health = agent.get("health", {})
            print(f"commits:   {_commit_line(health, body.get('state_age_s'))}")
            print(f"mqtt:      {_mqtt_line(health.get('mqtt'), mqtt_config)}")
            print(f"resend:    {_resend_line(health.get('mqtt'))}")
            print(f"clock:     {_clock_line(health.get('clock'))}")
            entries = health.get("drivers") or {}
            for name, d in agent.get("drivers", {}).items():
                print(f"driver {name}: {d.get('state')} (restarts {d.get('restarts')}, "
                      f"last error {d.get('last_error')}){_bad_input_part(entries.get(name))}"
                      f"{_refused_part(entries.get(name))}")
        else:
            print("agent:     no state file (has the agent run here?)")
    return EXIT_OK


def _driver_state(state_dir: Path, args: argparse.Namespace) -> int:
    """`urbanpulse edge driver-state`: the drivers' saved state listed (read only, beside a
    running agent too), or one driver's cleared (`--clear`, the agent stopped)."""
    from edge import driver_state
    from edge.agent import OUTBOX_FILE

    path = state_dir / OUTBOX_FILE
    if args.clear and args.driver is None and args.key is None:
        print("urbanpulse edge driver-state: --clear needs --driver SENSOR_ID or --key KEY "
              "(nothing cleared)", file=sys.stderr)
        return EXIT_CONFIG
    try:
        if args.clear:
            cleared = driver_state.clear(path, driver=args.driver, key=args.key)
        else:
            listed = {k: v for k, v in driver_state.saved(path).items()
                      if driver_state.selects(k, driver=args.driver, exact=args.key)}
    except EdgeError as exc:
        print(f"urbanpulse edge driver-state: {exc}", file=sys.stderr)
        return EXIT_RUNTIME
    if args.clear:
        if args.json:
            print(json.dumps({"outbox": str(path), "cleared": cleared}, indent=2))
        else:
            for key, value in cleared.items():
                print(f"cleared {key}: {driver_state.view(value)}")
            print("the driver starts without it at the agent's next start")
        return EXIT_OK
    if args.json:
        print(json.dumps({"outbox": str(path), "state": {
            k: {"driver": driver_state.sensor_of(k), "value": v} for k, v in listed.items()}},
            indent=2))
        return EXIT_OK
    print(f"outbox: {path} (state as last committed)")
    if not listed:
        print("no saved driver state" + (
            "" if args.driver is None and args.key is None
            else f" for driver {args.driver!r}" if args.key is None else f" under key {args.key!r}"))
    width = max((len(k) for k in listed), default=0)
    for key, value in listed.items():
        print(f"{key:<{width}}  driver {driver_state.sensor_of(key)}: {driver_state.view(value)}")
    return EXIT_OK


def _utc(ns: object) -> str:
    """A time of the heartbeat (ns since the epoch) as a person reads it, in UTC."""
    if not isinstance(ns, int) or isinstance(ns, bool):
        return "never"
    return datetime.fromtimestamp(ns / 1e9, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _outbox_line(outbox: object) -> str:
    """The outbox's depth, age and evictions (`--json`: the `outbox` object)."""
    if not isinstance(outbox, dict):
        return "none yet (no outbox in the state dir)"
    age = outbox.get("oldest_age_s")
    oldest = "" if age is None else f", the oldest committed {age:g} s ago"
    return f"{outbox.get('depth')} readings waiting{oldest}; {outbox.get('evicted')} evicted"


def _mqtt_line(mqtt: object, config: MqttConfig | None) -> str:
    """The MQTT link from the heartbeat's `mqtt` part (`--json`: `health.mqtt`), with the
    broker and user from the config: a refused login ("Not authorized") says whom it
    refused."""
    if not isinstance(mqtt, dict):
        return "unknown (the publisher has not started)"
    who = "" if config is None else f" to {config.host}:{config.port} as user {config.username!r}"
    line = f"{'connected' if mqtt.get('connected') else 'NOT connected'}{who}"
    line += (f" ({mqtt.get('connects')} connects); last publish {_utc(mqtt.get('last_publish_ns'))}, "
             f"last ack {_utc(mqtt.get('last_ack_ns'))}; {mqtt.get('readings_acked')} readings acked, "
             f"{mqtt.get('inflight')} batches in flight")
    error = mqtt.get("last_error")
    return f"{line}; last error: {'none' if error is None else error}"


def _resend_line(mqtt: object) -> str:
    """The resend backoff, from the heartbeat's `mqtt` part."""
    if not isinstance(mqtt, dict):
        return "unknown (the publisher has not started)"
    awaiting, refused = mqtt.get("awaiting_cloud") or 0, mqtt.get("refused") or 0
    line = f"{awaiting} batches await the cloud's ack, {refused} refused by the broker"
    if refused:
        line += f" ({mqtt.get('last_refusal')})"
    unsendable = mqtt.get("unsendable") or 0
    if unsendable:  # outbox rows an older agent stored that the contract refuses: deleted
        line += f", {unsendable} stored readings unsendable (deleted)"
    wait, next_in = mqtt.get("resend_wait_s"), mqtt.get("next_resend_in_s")
    if wait is None:
        return f"{line}; none waits for a resend"
    if mqtt.get("connected") is False:  # the times were set while connected and are stale
        return f"{line}; resends wait for the link to the broker (resend wait was {wait:g} s)"
    return f"{line}; resend wait now {wait:g} s, next resend in {next_in:g} s"


def _commit_line(health: dict[str, object], state_age_s: object) -> str:
    """Whether the agent could commit its readings to the outbox, from its state file
    (which a full disk leaves as it was: hence its age)."""
    error, held = health.get("outbox_error"), health.get("outbox_uncommitted")
    dropped = health.get("readings_dropped") or 0
    line = "ok" if error is None else (f"FAILING ({error}): {held} readings held in memory "
                                       "until the outbox commits again")
    if dropped:
        line += f"; {dropped} readings dropped uncommitted"
    return f"{line} (as of the state written {state_age_s} s ago)"


def _bad_input_part(entry: object) -> str:
    """What a driver could not use since the agent started (corrupt frames, ignored
    messages, glitches: the heartbeat's `drivers.<id>.bad_input`), the counts that are not
    0; nothing from a state file written before the agent counted them."""
    if not isinstance(entry, dict):
        return ""
    if "bad_input_error" in entry:
        return f"; bad input: not counted ({entry['bad_input_error']})"
    counts = entry.get("bad_input")
    if not isinstance(counts, dict):
        return ""
    said = ", ".join(f"{name} {n}" for name, n in counts.items() if n)
    return f"; bad input: {said or 'none'}"


def _refused_part(entry: object) -> str:
    """The driver's samples the agent refused since it started (no batch can carry them:
    the heartbeat's `drivers.<id>.refused`), and dropped; nothing when none. For a driver
    serving several sensors (a upfw board), which of them (`refused_sensors`: the first
    REFUSED_SENSORS_MAX, the rest as "others")."""
    refused = entry.get("refused") if isinstance(entry, dict) else None
    if not refused or not isinstance(entry, dict):
        return ""
    reasons = entry.get("refused_reasons")
    said = ""
    if isinstance(reasons, dict) and reasons:
        said = " (" + ", ".join(f"{code} {n}" for code, n in sorted(reasons.items())) + ")"
    sensors = entry.get("refused_sensors")
    by_sensor = ""
    if isinstance(sensors, dict) and sensors:
        named = [f"{sensor} {n}" for sensor, n in sensors.items()]
        if isinstance(refused, int):
            others = refused - sum(n for n in sensors.values() if isinstance(n, int))
            if others > 0:
                named.append(f"others {others}")
        by_sensor = "; by sensor: " + ", ".join(named)
    return f"; refused: {refused} samples no batch can carry{said} (dropped){by_sensor}"


def _clock_line(clock: object) -> str:
    if not isinstance(clock, dict):
        return "unknown"
    synced = clock.get("synchronised")
    sync = {True: "synchronised", False: "NOT synchronised (readings flagged clock_unsynced)",
            None: "synchronisation not checked"}.get(synced, f"synchronised={synced!r}")
    return f"{sync}, {clock.get('jumps')} jumps since start-up"
