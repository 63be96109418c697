"""Where the agent's memory goes before it does any work: an idle interpreter, then the
same interpreter importing, step by step, what the agent imports."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass

from bench.edge.errors import BenchError
from bench.edge.procfs import memory

# Cumulative: each step imports its modules on top of the previous steps.
IMPORT_STEPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("interpreter, nothing imported", ()),
    ("ssl (maps libssl and libcrypto)", ("ssl",)),
    ("asyncio", ("asyncio",)),
    ("sqlite3", ("sqlite3",)),
    ("json, logging, argparse, tomllib", ("json", "logging", "argparse", "tomllib")),
    ("pyserial + serial_asyncio_fast", ("serial", "serial_asyncio_fast")),
    ("paho.mqtt.client (urllib.request deferred, as the agent does)",
     ("defer:urllib.request", "paho.mqtt.client")),
    ("urbanpulse core + edge.config + sds011 driver (firmware_bridge)",
     ("urbanpulse.cli", "edge.cli", "edge.config", "edge.drivers.sds011.driver")),
    ("edge.agent, publisher, mqtt_client, logs", ("edge.agent", "edge.publisher",
                                                  "edge.mqtt_client", "edge.logs")),
    ("gpiozero (GPIO nodes only; not loaded for SDS011)", ("gpiozero",)),
)

_LADDER = """
import importlib, json, sys
steps = json.loads(sys.argv[1])
def rss():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
for label, modules in steps:
    for m in modules:
        if m.startswith("defer:"):
            from edge.deferred_imports import defer
            defer(m.removeprefix("defer:"))
        else:
            importlib.import_module(m)
    print(json.dumps([label, rss(), len(sys.modules)]), flush=True)
"""


@dataclass(frozen=True, slots=True)
class ImportStep:
    label: str
    rss_kb: int
    modules: int


def interpreter_version(python: str = sys.executable) -> str:
    done = subprocess.run([python, "-c", "import sys; print(sys.version.split()[0])"],
                          capture_output=True, text=True, timeout=60, check=False)
    if done.returncode != 0:
        raise BenchError(f"cannot run the agent's interpreter {python}: {done.stderr.strip()}")
    return done.stdout.strip()


def idle_interpreter_kb(python: str = sys.executable) -> int:
    """Peak RSS of `python -c "import time; time.sleep(...)"` once it is asleep."""
    proc = subprocess.Popen(
        [python, "-c", "import time; print('asleep', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
    try:
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != b"asleep":
            raise BenchError("the idle interpreter did not start")
        return memory(proc.pid).hwm_kb
    finally:
        proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def import_ladder(python: str = sys.executable) -> list[ImportStep]:
    try:
        done = subprocess.run([python, "-c", _LADDER, json.dumps(IMPORT_STEPS)],
                              capture_output=True, text=True, timeout=60, check=True)
    except subprocess.CalledProcessError as exc:
        raise BenchError(f"the import ladder failed:\n{exc.stderr}") from exc
    except subprocess.TimeoutExpired as exc:
        raise BenchError("the import ladder took over 60 s") from exc
    return [ImportStep(*json.loads(line)) for line in done.stdout.splitlines()]
