"""up / down / status / add_node: the operations behind `urbanpulse stack`."""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

from urbanpulse.stack import influxd, mosquitto, state
from urbanpulse.stack.config import CLOUD_USER, PORT_ENV, MqttCredentials, StackConfig, StackInfo
from urbanpulse.stack.errors import StackError
from urbanpulse.stack.files import ensure_secret, write_file
from urbanpulse.stack.layout import Layout
from urbanpulse.stack.process import free_ports
from urbanpulse.stack.state import CloudAuth
from urbanpulse.stack.tls import ensure_client_tls, ensure_tls

_PORT_KEYS = state.PORT_KEYS


@contextlib.contextmanager
def _locked(home: Path) -> Iterator[Layout]:
    """One stack operation at a time per home (two `up`s must not both start a server)."""
    layout = Layout(home)
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    with open(layout.lock, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield layout
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def recorded_ports(home: Path) -> dict[str, int]:
    """The ports of the last `up` in this home ({} if it never ran)."""
    return state.read(Layout(home)).ports


def resolve_config(home: Path | None = None, **ports: int | None) -> StackConfig:
    """The config `urbanpulse stack` uses: for each port, the explicit value, else
    URBANPULSE_*_PORT, else the port of this home's last `up`, else the default. The demo
    and other tools use it so that they find a stack started with custom ports."""
    unknown = set(ports) - set(_PORT_KEYS)
    if unknown:
        raise StackError(f"unknown port settings {sorted(unknown)}; expected {_PORT_KEYS}")
    home = StackConfig.from_env(home=home).home
    recorded = recorded_ports(home)
    chosen: dict[str, int] = {}
    for key in _PORT_KEYS:
        explicit = ports.get(key)
        if explicit is not None:
            chosen[key] = explicit
        elif not os.environ.get(PORT_ENV[key]) and key in recorded:
            chosen[key] = recorded[key]
    return StackConfig.from_env(home=home, **chosen)


def effective(config: StackConfig) -> StackConfig:
    """`config` with the ports the running stack in its home actually uses."""
    ports = recorded_ports(config.home)
    if not ports or not any(_running(Layout(config.home)).values()):
        return config
    return dataclasses.replace(
        config,
        mqtt_port=ports.get("mqtt_port", config.mqtt_port),
        mqtt_cloud_port=ports.get("mqtt_cloud_port", config.mqtt_cloud_port),
        influx_port=ports.get("influx_port", config.influx_port),
        influx_rpc_port=ports.get("influx_rpc_port", config.influx_rpc_port),
    )


def _running(layout: Layout) -> dict[str, bool]:
    return {
        "mosquitto": mosquitto.running_pid(layout) is not None,
        "influxd": influxd.running_pid(layout) is not None,
    }


def _info(config: StackConfig, layout: Layout) -> StackInfo:
    recorded = state.read(layout)
    return StackInfo(
        home=config.home,
        mqtt_host=config.bind,
        mqtt_port=config.mqtt_port,
        mqtt_cloud_port=config.mqtt_cloud_port,
        ca_file=layout.ca_cert,
        influx_url=influxd.url(config),
        database=config.database,
        credentials_dir=layout.credentials_dir,
        running=_running(layout),
        mqtt_cloud_auth=recorded.mqtt_cloud_auth or ("password" if recorded.ports else None),
    )


def _with_cloud_port(config: StackConfig, recorded: dict[str, int]) -> StackConfig:
    """`config` with its cloud listener's port: as given, else the last `up`'s, else free."""
    if config.mqtt_cloud_port is not None:
        return config
    port = recorded.get("mqtt_cloud_port")
    taken = {config.mqtt_port, config.influx_port, config.influx_rpc_port}
    for _ in range(10):
        if port is not None and port not in taken:
            break
        port = free_ports(1, config.bind)[0]
    return dataclasses.replace(config, mqtt_cloud_port=port)


def up(
    config: StackConfig,
    *,
    mosquitto_argv: Sequence[str] | None = None,
    mqtt_cloud_auth: CloudAuth | None = None,
) -> StackInfo:
    """Start what is not running; idempotent. Refuses to move a running server to new ports.

    `mosquitto_argv`: the command that runs mosquitto, without `-c <conf>` (None:
    /usr/sbin/mosquitto; tests run another build, e.g. Debian 13's through its loader).
    `mqtt_cloud_auth`: "password" or "certificate" (docs/stack.md); None: by the broker's
    version, certificate on mosquitto.LOSSY_VERSIONS. Both apply when mosquitto is started;
    a running one keeps how it was started."""
    if mqtt_cloud_auth is not None and mqtt_cloud_auth not in state.CLOUD_AUTHS:
        raise StackError(f"mqtt_cloud_auth must be one of {state.CLOUD_AUTHS} or None, "
                         f"got {mqtt_cloud_auth!r}")
    argv = list(mosquitto_argv) if mosquitto_argv is not None else [mosquitto.BINARY]
    version = mosquitto.require_binary(argv)
    auth = mosquitto.cloud_auth_for(version) if mqtt_cloud_auth is None else mqtt_cloud_auth
    mosquitto.check_auth(version, auth)
    influxd.require_binary()
    with _locked(config.home) as layout:
        running = _running(layout)
        previous = state.read(layout)
        recorded = previous.ports
        if running["mosquitto"]:
            argv = list(previous.mosquitto_argv or [mosquitto.BINARY])
            auth = previous.mqtt_cloud_auth or "password"
        if running["mosquitto"] and "mqtt_cloud_port" not in recorded:
            raise StackError(
                f"the mosquitto of {config.home} was started by an older urbanpulse, without "
                "the cloud's listener; run `urbanpulse stack down` first"
            )
        config = _with_cloud_port(config, recorded)
        for key in _PORT_KEYS:
            wanted = getattr(config, key)
            owner = "mosquitto" if key == "mqtt_port" else "influxd"
            if running[owner] and recorded.get(key, wanted) != wanted:
                raise StackError(
                    f"{owner} of {config.home} is already running with {key}="
                    f"{recorded[key]}, not {wanted}; run `urbanpulse stack down` first"
                )
        for private in (layout.credentials_dir, layout.mosquitto_dir, layout.influx_dir):
            private.mkdir(exist_ok=True, mode=0o700)
            private.chmod(0o700)
        ensure_tls(layout)
        # In certificate mode too: the processor's config needs a password file (the broker
        # ignores the password there).
        ensure_secret(layout.mqtt_password(CLOUD_USER))
        if auth == "certificate":
            ensure_client_tls(layout, CLOUD_USER, may_replace_ca=not running["mosquitto"])
        state.write(layout, state.Recorded({k: getattr(config, k) for k in _PORT_KEYS},
                                           tuple(argv), auth))
        # Every port is checked before anything starts, so a clash leaves nothing half up.
        if not running["influxd"]:
            influxd.check_ports(config)
        if not running["mosquitto"]:
            mosquitto.check_ports(config)
        started: list[str] = []
        try:
            if not running["influxd"]:
                influxd.write_config(config, layout)
                started.append("influxd")
                influxd.start(config, layout)
            influxd.bootstrap(config, layout)
            if not running["mosquitto"]:
                mosquitto.write_config(config, layout, auth)
                started.append("mosquitto")
                mosquitto.start(config, layout, argv, auth)
        except BaseException:
            # Leave nothing half up: stop what this call started, keep what ran before.
            if "mosquitto" in started:
                mosquitto.stop(layout)
            if "influxd" in started:
                influxd.stop(layout)
            raise
        return _info(config, layout)


def down(config: StackConfig) -> None:
    """Stop the servers this home's `up` started (pidfile and command line must match)."""
    if not config.home.is_dir():
        return
    with _locked(config.home) as layout:
        mosquitto.stop(layout)
        influxd.stop(layout)


def status(config: StackConfig) -> StackInfo:
    config = effective(config)
    return _info(config, Layout(config.home))


def add_node(config: StackConfig, site: str, node: str, *, gateway: bool = False
             ) -> MqttCredentials:
    """A per-node MQTT user "<site>.<node>" confined to its own topics; idempotent.
    `gateway`: the user is its site's gateway and may also write its `relay` topic (whose
    items speak for any node of the site); the role is what the last call gave, so adding
    a gateway again without it takes that right away."""
    user = mosquitto.node_user(site, node)
    config = effective(config)
    with _locked(config.home) as layout:
        ensure_secret(layout.mqtt_password(user))
        mark = layout.mqtt_gateway_mark(user)
        role_changed = mark.is_file() != gateway
        if gateway:
            write_file(mark, "")
        else:
            mark.unlink(missing_ok=True)
        # The reload is checked by connecting as the new user; for a user the broker knows,
        # that probe (its client id forced to the user name) would kick the node off: a new
        # role alone is checked by connecting as the cloud (any CONNACK after the SIGHUP comes
        # after the reload, which Mosquitto's one loop does before it serves a new client).
        if not mosquitto.knows_user(layout, user):
            mosquitto.write_auth_files(layout)
            mosquitto.reload(config, layout, user)
        elif role_changed:
            mosquitto.write_auth_files(layout)
            mosquitto.reload(config, layout, CLOUD_USER)
        return _info(config, layout).mqtt(user)
