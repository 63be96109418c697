"""`urbanpulse gateway`: run a site gateway, or check its config (docs/gateway.md)."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

from edge.cli import EXIT_CONFIG, EXIT_OK, EXIT_RUNTIME, LOG_LEVELS
from edge.gateway.config import GatewayConfig, load_config
from urbanpulse.cli_types import add_config_argument, config_of
from urbanpulse.errors import ConfigError, UrbanpulseError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="urbanpulse gateway", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    run = sub.add_parser("run", help="relay the site's nodes to the cloud, in the foreground "
                                     "(systemd-friendly)")
    run.add_argument("--config", type=Path, required=True)
    run.add_argument("--log-level", default="INFO", type=str.upper, choices=LOG_LEVELS,
                     metavar="LEVEL", help="the least severe log record written: "
                     f"{', '.join(LOG_LEVELS)}, in any case (default INFO)")
    check = sub.add_parser("check-config", help="validate a gateway config and exit")
    add_config_argument(check)
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
        print(f"{args.config}: ok (gateway {config.site}/{config.id}: site broker "
              f"{config.site_mqtt.host}:{config.site_mqtt.port}, cloud broker "
              f"{config.cloud_mqtt.host}:{config.cloud_mqtt.port})")
        return EXIT_OK
    return run_gateway(config, args.log_level)


def run_gateway(config: GatewayConfig, level: str) -> int:
    """`urbanpulse gateway run`: until SIGTERM or SIGINT; its exit code."""
    from edge.gateway.mqtt import make_client
    from edge.gateway.service import Gateway
    from edge.logs import setup_logging

    setup_logging(level)
    stop = stop_on_signals((signal.SIGTERM, signal.SIGINT))
    gateway = Gateway(config, lambda: make_client(config.site_mqtt, "site_mqtt"),
                      lambda: make_client(config.cloud_mqtt, "cloud_mqtt"))
    try:
        gateway.run(stop)
    except UrbanpulseError as exc:
        print(f"site gateway: {exc}", file=sys.stderr)
        return EXIT_RUNTIME
    return EXIT_OK


def stop_on_signals(signals: tuple[signal.Signals, ...]) -> threading.Event:
    """An event set by the first of `signals`, taken by a thread of its own (sigwait), not
    by a Python signal handler. The handler's `Event.set()` takes a lock; a second SIGTERM
    arriving while it held it ran the handler again inside it, on the same thread, which
    then waited for that lock for ever: the gateway never stopped. A second SIGTERM is
    ordinary: a process forked by one thread of a multithreaded parent (the demo) gets its
    parent-death signal again each time it is handed to another of the parent's threads as
    they exit. To be called before any other thread starts: threads started later inherit
    the blocked signals, so none of them is stopped by one."""
    stop = threading.Event()
    wanted = set(signals)
    signal.pthread_sigmask(signal.SIG_BLOCK, wanted)

    def wait() -> None:
        signal.sigwait(wanted)
        stop.set()

    threading.Thread(target=wait, name="signals", daemon=True).start()
    return stop
