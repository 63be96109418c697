"""The `urbanpulse` command. Each group is imported only when it is used, so that
`urbanpulse edge ...` runs on a node that has only the `edge` extra installed."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable, Sequence

GROUPS: dict[str, tuple[str, str]] = {
    "stack": ("urbanpulse.stack.cli", "start, stop and inspect the local Mosquitto and InfluxDB"),
    "demo": ("urbanpulse.demo.cli", "run a small simulated city through the whole pipeline"),
    "edge": ("edge.cli", "the agent on a sensor node: run, check-config, status"),
    "cloud": ("cloud.cli", "the central dataflow: run, ingest, init-db"),
    "bridge": ("firmware_bridge.cli", "serial protocols: decode captures, emulate devices, probe"),
    "simulate": ("urbanpulse.simulate.cli", "a city of simulated sensors"),
    "detect": ("cloud.detect.cli", "score a NAB-format CSV with a streaming anomaly detector"),
    "dashboards": ("urbanpulse.dashboards.cli", "generate and check the Grafana dashboards"),
    "query": ("cloud.query.cli", "analysts' queries (readings, aggregates, ledger, events) as CSV"),
}


def _built(module_name: str) -> bool:
    try:
        return importlib.util.find_spec(module_name) is not None
    except ModuleNotFoundError:
        return False


def _usage() -> str:
    lines = ["usage: urbanpulse GROUP [ARGS...]", "", "groups:"]
    lines += [f"  {name:<11} {help_}" + ("" if _built(module) else " (not in this build yet)")
              for name, (module, help_) in GROUPS.items()]
    lines += ["", "`urbanpulse GROUP --help` for the commands of a group."]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
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
    if not _built(module_name):
        print(f"urbanpulse {group}: not in this build yet", file=sys.stderr)
        return 3
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] in ("urbanpulse", "edge", "cloud", "firmware_bridge"):
            raise
        print(
            f"urbanpulse {group}: needs {exc.name!r}, which is not installed "
            f"(install the extra that provides it, e.g. `pip install urbanpulse[cloud]`)",
            file=sys.stderr,
        )
        return 3
    run: Callable[[list[str]], int] = module.main
    return run(args[1:])


if __name__ == "__main__":
    sys.exit(main())
