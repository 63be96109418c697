"""The `urbanpulse` command. Each group is imported only when it is used, so that
`urbanpulse edge ...` runs on a node that has only the `edge` extra installed."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable, Sequence

from urbanpulse.closed_stdout import run_command

GROUPS: dict[str, tuple[str, str]] = {
    "stack": ("urbanpulse.stack.cli", "start, stop and inspect the local Mosquitto and InfluxDB"),
    "demo": ("urbanpulse.demo.cli", "run a small simulated city through the whole pipeline"),
    "edge": ("edge.cli", "the agent on a sensor node: run, check-config, status, driver-state"),
    "gateway": ("edge.gateway.cli", "a site gateway relaying its nodes to the cloud: run, check-config"),
    "cloud": ("cloud.cli", "the central dataflow: run, ingest, init-db, new-state, check-config, recompute"),
    "bridge": ("firmware_bridge.cli", "serial protocols: decode captures, emulate devices, probe"),
    "simulate": ("urbanpulse.simulate.cli", "a city of simulated sensors"),
    "detect": ("cloud.detect.cli", "score a NAB-format CSV with a streaming anomaly detector"),
    "dashboards": ("urbanpulse.dashboards.cli", "generate and check the Grafana dashboards"),
    "query": ("cloud.query.cli", "analysts' queries (readings, aggregates, ledger, events) as CSV"),
}


OWN_PACKAGES = ("urbanpulse", "edge", "cloud", "firmware_bridge")
# Which extra installs a third-party package a group imports (pyproject.toml).
EXTRA_OF = {"bytewax": "cloud", "numpy": "cloud", "pandas": "cloud", "orjson": "cloud",
            "cryptography": "cloud", "influxdb_client": "influx2", "paho": "edge",
            "gpiozero": "edge", "serial": "edge", "serial_asyncio_fast": "edge"}


def _missing_dependency(exc: ModuleNotFoundError) -> str | None:
    """The third-party package `exc` is about, or None when it is one of ours."""
    top = (exc.name or "").split(".")[0]
    return None if not top or top in OWN_PACKAGES else top


# Packages an extra leaves out from a Python version on (pyproject.toml's markers): the
# pinned Bytewax 0.21.1 has wheels for CPython 3.11-3.12 only, so on Debian 13's 3.13 the
# cloud extra installs without it and installing the extra again would not help.
NO_WHEELS_FROM: dict[str, tuple[int, int]] = {"bytewax": (3, 13)}


def _needs(group: str, package: str, python: tuple[int, int] | None = None) -> str:
    extra = EXTRA_OF.get(package, "cloud")
    major, minor = sys.version_info[:2] if python is None else python
    first = NO_WHEELS_FROM.get(package)
    if first is not None and (major, minor) >= first:
        return (f"urbanpulse {group}: needs {package!r}, which the {extra!r} extra installs on "
                f"Python 3.11-3.12 only (Bytewax 0.21.1 has no wheels for Python {major}.{minor}):"
                " run it from a virtualenv of Python 3.11 or 3.12 (`PYTHON=python3.12 "
                "scripts/bootstrap`)")
    return (f"urbanpulse {group}: needs {package!r}, which is not installed here "
            f"(`pip install 'urbanpulse[{extra}]'`)")


def _status(module_name: str) -> str | None:
    """None when the group can be imported; else why not, for the usage."""
    try:
        found = importlib.util.find_spec(module_name) is not None
    except ModuleNotFoundError as exc:  # a parent package failed to import
        package = _missing_dependency(exc)
        return "not in this build yet" if package is None else f"needs {package!r}"
    return None if found else "not in this build yet"


def _usage() -> str:
    lines = ["usage: urbanpulse GROUP [ARGS...]", "", "groups:"]
    for name, (module, help_) in GROUPS.items():
        status = _status(module)
        lines.append(f"  {name:<11} {help_}" + ("" if status is None else f" ({status})"))
    lines += ["", "`urbanpulse GROUP --help` for the commands of a group."]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    # `urbanpulse ... | head -1`: a reader that stops early ends any command quietly
    return run_command(lambda: _dispatch(args))


def _dispatch(args: list[str]) -> int:
    if not args or args[0] in ("-h", "--help"):
        print(_usage())
        return 0 if args else 2
    if args[0] == "--version":
        from urbanpulse import __version__

        print(__version__)
        return 0
    group = args[0]
    if group not in GROUPS:
        print(f"urbanpulse: unknown group {group!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module_name, _ = GROUPS[group]
    if _status(module_name) == "not in this build yet":
        print(f"urbanpulse {group}: not in this build yet", file=sys.stderr)
        return 3
    try:
        module = importlib.import_module(module_name)
        run: Callable[[list[str]], int] = module.main
        # Commands import what only they need when they run (`cloud run`: Bytewax).
        return run(args[1:])
    except ModuleNotFoundError as exc:
        package = _missing_dependency(exc)
        if package is None:
            raise
        print(_needs(group, package), file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
