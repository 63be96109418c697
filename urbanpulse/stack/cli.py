"""`urbanpulse stack up | down | status [--json] | add-node --site S --node N [--gateway]`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from urbanpulse.closed_stdout import is_closed_stdout
from urbanpulse.errors import UrbanpulseError
from urbanpulse.stack.config import StackConfig, StackInfo
from urbanpulse.stack.lifecycle import add_node, down, resolve_config, status, up


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="urbanpulse stack",
        description="Start, stop and inspect the project's own Mosquitto and InfluxDB.",
    )
    parser.add_argument(
        "--home", type=Path, help="state directory (default: $URBANPULSE_HOME or ./.urbanpulse)"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p_up = sub.add_parser("up", help="start what is not running (idempotent)")
    p_up.add_argument("--mqtt-port", type=int,
                      help="the nodes' MQTT over TLS port (default 8883)")
    p_up.add_argument("--mqtt-cloud-port", type=int,
                      help="the cloud's MQTT over TLS port (default: a free port, kept)")
    p_up.add_argument("--influx-port", type=int, help="InfluxDB HTTP port (default 8086)")
    p_up.add_argument("--influx-rpc-port", type=int, help="influxd backup RPC port (default 8088)")
    sub.add_parser("down", help="stop what `up` started in this home")
    p_status = sub.add_parser("status", help="endpoints, database and where the credentials are")
    p_status.add_argument("--json", action="store_true", help="machine-readable output")
    p_node = sub.add_parser("add-node", help="create the MQTT user of a sensor node")
    p_node.add_argument("--site", required=True)
    p_node.add_argument("--node", required=True)
    p_node.add_argument("--gateway", action="store_true",
                        help="the site's gateway: may also write its relay topic, which speaks "
                             "for any node of its site (without it, a gateway is made a plain "
                             "node again)")
    for p in (p_up, p_status, p_node, sub.choices["down"]):
        p.add_argument("--home", type=Path, default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    return parser


def _config(args: argparse.Namespace) -> StackConfig:
    # Ports not given now are those of this home's last `up`, so a bare
    # `urbanpulse stack up` after `up --mqtt-port 18883` keeps 18883.
    return resolve_config(
        args.home,
        mqtt_port=getattr(args, "mqtt_port", None),
        mqtt_cloud_port=getattr(args, "mqtt_cloud_port", None),
        influx_port=getattr(args, "influx_port", None),
        influx_rpc_port=getattr(args, "influx_rpc_port", None),
    )


def _print_human(info: StackInfo) -> None:
    data = info.to_json()
    state = ", ".join(f"{name} {'running' if on else 'stopped'}" for name, on in info.running.items())
    print(f"home         {info.home}")
    print(f"state        {state}")
    print(f"mqtt         mqtts://{info.mqtt_host}:{info.mqtt_port}  nodes (CA {info.ca_file})")
    if info.mqtt_cloud_port is not None:
        print(f"             mqtts://{info.mqtt_host}:{info.mqtt_cloud_port}  cloud")
    if data["mqtt"]["cloud_auth"] == "certificate":
        print(f"             cloud: client certificate {data['mqtt']['cloud_cert_file']}")
        print(f"                    key {data['mqtt']['cloud_key_file']}")
    print(f"influxdb     {info.influx_url}  database {info.database!r}")
    print(f"credentials  {info.credentials_dir}")
    if not info.credentials_dir.is_dir():
        print("  (none yet: `urbanpulse stack up` creates them)")
    for user, path in data["mqtt"]["users"].items():
        gateway = "  (site gateway)" if user in data["mqtt"]["gateways"] else ""
        print(f"  mqtt   {user:<24} {path}{gateway}")
    for role, path in data["influx"]["users"].items():
        print(f"  influx {role:<24} {path}")


def main(argv: list[str]) -> int:
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:  # --help, or a usage error argparse has already printed
        return exc.code if isinstance(exc.code, int) else 2
    try:
        config = _config(args)
        if args.command == "up":
            _print_human(up(config))
        elif args.command == "down":
            down(config)
            print(f"stopped the stack of {config.home}")
        elif args.command == "status":
            info = status(config)
            if args.json:
                print(json.dumps(info.to_json(), indent=2))
            else:
                _print_human(info)
        elif args.command == "add-node":
            creds = add_node(config, args.site, args.node, gateway=args.gateway)
            role = " (site gateway: may write its relay)" if args.gateway else ""
            print(f"mqtt user {creds.username}{role}: password in {creds.password_file}")
    except (UrbanpulseError, OSError) as exc:
        if is_closed_stdout(exc):
            raise  # `status | head -3`: the dispatcher ends it quietly
        print(f"urbanpulse stack {args.command}: {exc}", file=sys.stderr)
        return 1
    return 0
