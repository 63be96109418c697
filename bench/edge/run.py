"""The edge agent's CPU per 1,000 readings and peak RSS, on this machine.

    python -m bench.edge.run [--sensors 10] [--rate 100] [--warmup 10] [--window 60]
                             [--idle-window 10] [--unpaced] [--json FILE]

Starts a private Mosquitto (and the stack's InfluxDB, unused) in a temporary home on free
loopback ports, provisions a node, and runs the real agent process
(`python -m urbanpulse.cli edge run`) reading SDS011 emulators on pseudo-terminals
that live in this process. A subscriber, as the cloud user, counts what is delivered.
CPU time and memory come from /proc/<agent pid>.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
from pathlib import Path

from bench.edge.baseline import ImportStep, idle_interpreter_kb, import_ladder, interpreter_version
from bench.edge.delivered import DeliveredCounter
from bench.edge.errors import BenchError
from bench.edge.measure import IdleResult, LoadResult, idle_phase, load_phase
from urbanpulse.stack import StackConfig, StackError, add_node, down, up
from urbanpulse.stack.process import free_ports

TARGET_RSS_MIB = 30.0
TARGET_CORE_PCT = 2.0
SITE = "bench"
NODE = "edge-01"


def _mib(kb: int) -> float:
    return kb / 1024


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def report(interpreter_kb: int, ladder: list[ImportStep], idle: IdleResult | None,
           load: LoadResult, python: str = sys.executable, version: str = "") -> str:
    lines = [
        f"edge agent benchmark: {load.sensors} SDS011 sensors "
        f"({'paced at 9600 baud' if load.paced else 'whole frames'}), target "
        f"{load.target_rate:g} readings/s, window {load.window_s:.1f} s",
        f"agent interpreter: {python} (Python {version})",
        "",
        f"readings/s delivered:        {load.rate:.1f}  ({load.delivered} in the window, "
        f"{load.messages_in_window} MQTT messages)",
        f"CPU per 1,000 readings:      {load.cpu_ms_per_1000:.0f} ms  "
        f"(user {1e3 * load.user_s:.0f} ms, sys {1e3 * load.system_s:.0f} ms in the window; "
        f"event-loop thread {1e3 * load.loop_thread_cpu_s:.0f} ms, other threads "
        f"{1e3 * (load.cpu_s - load.loop_thread_cpu_s):.0f} ms)",
        f"CPU, % of one core:          {load.core_pct:.2f} %   target < {TARGET_CORE_PCT:g} %: "
        f"{_verdict(load.core_pct < TARGET_CORE_PCT)}",
        f"peak RSS (VmHWM):            {_mib(load.hwm_kb):.1f} MiB   target < "
        f"{TARGET_RSS_MIB:g} MiB: {_verdict(_mib(load.hwm_kb) < TARGET_RSS_MIB)}",
        f"RSS at the end / max seen:   {_mib(load.rss_end_kb):.1f} / "
        f"{_mib(load.rss_max_kb):.1f} MiB (at the end: private {_mib(load.anon_end_kb):.1f} MiB, "
        f"mapped files {_mib(load.file_end_kb):.1f} MiB)",
        f"outbox depth at the end:     {load.outbox_depth_end} (after a clean stop: "
        f"{load.outbox_depth_after_stop})",
        f"committed / delivered:       {load.committed_total} / {load.delivered_total} "
        f"(lost {load.committed_total - load.delivered_total}, duplicates {load.duplicates}); "
        f"agent exit code {load.exit_code}",
        f"agent CPU over its life:     {load.lifetime_cpu_s:.2f} s (start-up included); "
        f"{load.threads} threads",
        "",
        "memory, where it goes:",
        f"  idle interpreter (python -c 'import time; time.sleep(...)'):  "
        f"{_mib(interpreter_kb):.1f} MiB",
    ]
    if idle is not None:
        lines.append(f"  agent started, connected, ports open, no readings:        "
                     f"{_mib(idle.hwm_kb):.1f} MiB peak, {_mib(idle.rss_kb):.1f} MiB now; "
                     f"CPU {idle.core_pct:.2f} % of a core over {idle.window_s:.0f} s "
                     f"(event-loop thread {100 * idle.loop_thread_cpu_s / idle.window_s:.2f} %)")
    lines.append(f"  agent at {load.rate:.0f} readings/s:                             "
                 f"{_mib(load.hwm_kb):.1f} MiB peak "
                 f"({_mib(interpreter_kb) and _mib(load.hwm_kb) / _mib(interpreter_kb):.1f}x "
                 "the idle interpreter)")
    lines.append("  imports, cumulative RSS in a fresh interpreter (delta):")
    previous = 0
    for step in ladder:
        lines.append(f"    {step.label:<66} {_mib(step.rss_kb):5.1f} MiB "
                     f"({_mib(step.rss_kb - previous):+.1f}; {step.modules} modules)")
        previous = step.rss_kb
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.edge.run", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sensors", type=int, default=10, help="SDS011 emulators (default 10)")
    p.add_argument("--rate", type=float, default=100.0,
                   help="readings per second from all sensors together (default 100)")
    p.add_argument("--warmup", type=float, default=10.0,
                   help="seconds of load before the window opens (default 10)")
    p.add_argument("--window", type=float, default=60.0,
                   help="seconds of steady state measured (default 60)")
    p.add_argument("--idle-window", type=float, default=10.0,
                   help="seconds the idle agent is watched; 0 skips the idle phase (default 10)")
    p.add_argument("--unpaced", action="store_true",
                   help="sensors write each frame whole (a buffering USB adapter) instead of "
                        "byte by byte at 9600 baud (a bare UART, the default)")
    p.add_argument("--agent-python", default=sys.executable,
                   help="the interpreter of the venv the agent runs in, e.g. a node-shaped venv "
                        "made with the distribution's python3 and `pip install .[edge]` "
                        "(default: this interpreter)")
    p.add_argument("--json", type=Path, help="also write the figures to this file")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.sensors < 1 or args.rate <= 0 or args.window <= 0 or args.warmup < 0 \
            or args.idle_window < 0:
        print("need --sensors >= 1, --rate > 0, --window > 0, --warmup >= 0, --idle-window >= 0",
              file=sys.stderr)
        return 2
    python = args.agent_python
    try:
        version = interpreter_version(python)
        interpreter_kb = idle_interpreter_kb(python)
        ladder = import_ladder(python)
    except BenchError as exc:
        print(f"bench.edge: {exc}", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="urbanpulse-bench-edge-") as tmp:
        workdir = Path(tmp)
        mqtt_port, influx_port, rpc_port = free_ports(3)
        stack = StackConfig(home=workdir / "home", mqtt_port=mqtt_port, influx_port=influx_port,
                            influx_rpc_port=rpc_port)
        try:
            info = up(stack)
            creds = add_node(stack, SITE, NODE)
            counter = DeliveredCounter(info, SITE, NODE)
            counter.start()
            try:
                idle = None if args.idle_window == 0 else idle_phase(
                    workdir, creds, SITE, NODE, args.sensors, args.idle_window, counter, python)
                load = load_phase(workdir, creds, SITE, NODE, args.sensors, args.rate,
                                  args.warmup, args.window, counter, python,
                                  paced=not args.unpaced)
            finally:
                counter.stop()
        except (BenchError, StackError) as exc:
            print(f"bench.edge: {exc}", file=sys.stderr)
            return 1
        finally:
            down(stack)
    print(report(interpreter_kb, ladder, idle, load, python, version))
    if args.json is not None:
        args.json.write_text(json.dumps({
            "agent_python": python, "python_version": version,
            "interpreter_kb": interpreter_kb,
            "imports": [dataclasses.asdict(s) for s in ladder],
            "idle": None if idle is None else dataclasses.asdict(idle),
            "load": dataclasses.asdict(load) | {
                "readings_per_s": load.rate, "cpu_ms_per_1000": load.cpu_ms_per_1000,
                "core_pct": load.core_pct},
            "targets": {"rss_mib": TARGET_RSS_MIB, "core_pct": TARGET_CORE_PCT},
        }, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
