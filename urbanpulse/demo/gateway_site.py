"""The demo's site behind a gateway (docs/demo.md, "The site behind a gateway"): the live
hospital's edge agents publish to a site broker of their own
(`urbanpulse.stack.site_broker`: TLS, the nodes' own users, the gateway's), and a real
`urbanpulse gateway run` relays them to the stack's broker, one relay a second, as at a
hospital with many nodes (docs/gateway.md).

The lightweight nodes of that site still publish to the stack's broker directly: they do
not keep what they sent until the cloud acknowledges it (in effect `delivery = "broker"`),
which a gateway does not support."""

from __future__ import annotations

import contextlib
import dataclasses
import subprocess
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from urbanpulse.demo.live import LiveNode
from urbanpulse.errors import UrbanpulseError
from urbanpulse.mqtt import close_client, connect_and_wait, make_client
from urbanpulse.stack import (
    MqttCredentials,
    StackConfig,
    StackError,
    StackInfo,
    add_node,
    site_broker,
)
from urbanpulse.stack.parent_death import ends_with_parent
from urbanpulse.stack.process import free_ports, port_is_free, stop_group, wait_until
from urbanpulse.stack.site_broker import SiteBroker
from urbanpulse.wire import WireError, decode_status
from urbanpulse.wire.topics import status_topic

if TYPE_CHECKING:
    import paho.mqtt.client as paho

GATEWAY_ID = "gw-1"
# Its status (with its counters) on the stack's broker every 2 s instead of the default
# 30 s: the summary (refreshed every 2 s) shows its counters, and the demo, which waits for
# a status saying it is subscribed on both brokers (its first, at its connection to the
# cloud's broker, may come before its subscription to the site broker), starts its agents
# at most 2 s after that. Relays leave after 1 s (the default).
HEARTBEAT_S = 2.0
RELAY_MAX_DELAY_S = 1.0
READY_S = 30.0  # from its start until it says it is subscribed on both brokers
# Its SIGTERM: it relays what waits, waits up to 5 s for the cloud's acks, says offline.
STOP_S = 20.0
GATEWAY_DRIVERS = frozenset({"bed_pad", "door_counter"})  # a hospital's live devices
# The site broker's port is free a moment before it binds it; another process (tests in
# parallel) may take it meanwhile: another free port is tried then.
PORT_TRIES = 3


class GatewaySiteError(UrbanpulseError):
    pass


def choose_site(live: Sequence[LiveNode]) -> tuple[str, list[LiveNode]] | None:
    """The live hospital's site (that of the first live node with a bed pad or a door
    counter) and its live nodes, in order; None if no live node is a hospital's."""
    site = next((n.site for n in live if any(s.spec.driver in GATEWAY_DRIVERS
                                             for s in n.sensors)), None)
    if site is None:
        return None
    return site, [n for n in live if n.site == site]


def gateway_toml(site: str, site_creds: MqttCredentials, cloud_creds: MqttCredentials) -> str:
    """What the Ansible site_gateway role renders (gateway.toml.j2), for this machine."""
    return f"""\
# Written by `urbanpulse demo` (docs/demo.md, "The site behind a gateway").
[gateway]
site = "{site}"
id = "{GATEWAY_ID}"
relay_max_delay_s = {RELAY_MAX_DELAY_S}
heartbeat_s = {HEARTBEAT_S}

[site_mqtt]
host = "{site_creds.host}"
port = {site_creds.port}
ca_file = "{site_creds.ca_file}"
username = "{site_creds.username}"
password_file = "{site_creds.password_file}"

[cloud_mqtt]
host = "{cloud_creds.host}"
port = {cloud_creds.port}
ca_file = "{cloud_creds.ca_file}"
username = "{cloud_creds.username}"
password_file = "{cloud_creds.password_file}"
"""


class StatusWatch:
    """The gateway's status messages on the stack's broker, read as the cloud reads them
    (the cloud user): the last one it published since the watch began (a retained one,
    of an earlier run, is not taken)."""

    def __init__(self, info: StackInfo, site: str) -> None:
        self._lock = threading.Lock()
        self._last: dict[str, Any] | None = None
        self.client: paho.Client = make_client(f"demo-gateway-status.{site}", info.mqtt("cloud"),
                                               clean_start=True)
        self.client.on_message = self._message
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *a: subscribed.set()
        connect_and_wait(self.client)
        self.client.subscribe(status_topic(site, GATEWAY_ID), qos=1)
        if not subscribed.wait(10):
            self.close()
            raise GatewaySiteError("the stack's broker did not acknowledge the subscription to "
                                   "the gateway's status")

    def _message(self, client: Any, userdata: Any, msg: Any) -> None:
        if msg.retain:
            return
        with contextlib.suppress(WireError):  # not a status: the cloud's to say so
            status = decode_status(msg.payload)
            with self._lock:
                self._last = status

    def last(self) -> dict[str, Any] | None:
        with self._lock:
            return self._last

    def relaying(self) -> bool:
        """Its last status says online and subscribed on both brokers."""
        last = self.last()
        if last is None or last.get("state") != "online":
            return False
        health = last.get("health") or {}
        return bool(health.get("site_mqtt", {}).get("subscribed")
                    and health.get("cloud_mqtt", {}).get("subscribed"))

    def close(self) -> None:
        close_client(self.client)


@dataclass
class GatewaySite:
    """The site broker and the gateway process, children of the demo: they get SIGTERM
    from the kernel when the demo ends without stopping them (`ends_with_demo`)."""

    site: str
    nodes: list[LiveNode]
    broker: SiteBroker
    config: Path
    log: Path
    broker_proc: subprocess.Popen[bytes] | None = None
    gateway_proc: subprocess.Popen[bytes] | None = None
    watch: StatusWatch | None = None
    exit_code: int | None = None
    final: dict[str, Any] | None = field(default=None)

    @classmethod
    def plan(cls, home: Path, demo_dir: Path, site: str, nodes: list[LiveNode]) -> GatewaySite:
        """Its site broker's port is chosen when it starts (0 until then)."""
        broker = SiteBroker(home, site, GATEWAY_ID, tuple(n.node for n in nodes), 0)
        return cls(site, nodes, broker, demo_dir / "gateway.toml", demo_dir / "gateway.log")

    @property
    def user(self) -> str:
        return self.broker.gateway_user

    def start(self, config: StackConfig, info: StackInfo, *, ends_with_demo: bool) -> None:
        """The nodes' and the gateway's users on the stack's broker (the gateway with its
        relay right), the site broker, the gateway; returns at once (wait_relaying).
        `ends_with_demo`: both get SIGTERM from the kernel when the calling thread ends
        (urbanpulse.stack.parent_death): call it from the thread that stops them."""
        for node in self.nodes:
            add_node(config, node.site, node.node)
        cloud = add_node(config, self.site, GATEWAY_ID, gateway=True)
        for attempt in range(PORT_TRIES):
            (port,) = free_ports(1, self.broker.bind)
            self.broker = dataclasses.replace(self.broker, port=port)
            try:
                self.broker_proc = site_broker.start(self.broker,
                                                     ends_with_parent=ends_with_demo)
                break
            except StackError:
                if attempt == PORT_TRIES - 1 or port_is_free(self.broker.bind, port):
                    raise  # not a port taken meanwhile
        self.config.write_text(gateway_toml(self.site, self.broker.creds(self.user), cloud),
                               encoding="utf-8")
        with self.log.open("ab") as log:
            argv = [sys.executable, "-m", "urbanpulse.cli", "gateway", "run", "--config",
                    str(self.config)]
            self.gateway_proc = subprocess.Popen(
                ends_with_parent(argv) if ends_with_demo else argv, stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.watch = StatusWatch(info, self.site)

    def wait_relaying(self, timeout_s: float = READY_S) -> None:
        assert self.watch is not None
        watch = self.watch
        if not wait_until(lambda: watch.relaying() or self.failure() is not None,
                          timeout_s=timeout_s, poll_s=0.1):
            raise GatewaySiteError(f"the gateway did not say it relays within {timeout_s:.0f} s: "
                                   f"see {self.log} and {self.broker.log}")
        problem = self.failure()
        if problem:
            raise GatewaySiteError(problem)

    def node_mqtt(self, node: LiveNode) -> dict[str, Any]:
        """A node's `[mqtt]` on the site broker: its own user and password, as on the
        stack's broker; `delivery = "cloud"`, the default, which a gateway needs."""
        creds = self.broker.creds(f"{node.site}.{node.node}")
        return {"host": creds.host, "port": creds.port, "ca_file": str(creds.ca_file),
                "username": creds.username, "password_file": str(creds.password_file)}

    def failure(self) -> str | None:
        if self.broker_proc is not None and self.broker_proc.poll() is not None:
            return (f"the site broker exited ({self.broker_proc.returncode}); see "
                    f"{self.broker.log}")
        if self.gateway_proc is not None and self.gateway_proc.poll() is not None:
            return f"the gateway exited ({self.gateway_proc.returncode}); see {self.log}"
        return None

    def stop(self) -> None:
        """The gateway (SIGTERM: its last relays, its offline status), then the site broker.
        To be called once the nodes stopped: their last batches and offline statuses go
        through the gateway."""
        try:
            if self.gateway_proc is not None:
                self.exit_code = stop_group(self.gateway_proc, STOP_S)
            if self.watch is not None:
                watch = self.watch
                wait_until(lambda: (watch.last() or {}).get("state") == "offline",
                           timeout_s=2.0, poll_s=0.05)
                self.final = watch.last()
                watch.close()
        finally:
            if self.broker_proc is not None:
                site_broker.stop(self.broker_proc)

    def summary_lines(self, ledger: tuple[int, int, int] | None) -> list[str]:
        """The summary's section: where it runs, its last status, its nodes' ledger."""
        nodes = ", ".join(n.node for n in self.nodes)
        lines = [f"site gateway {self.site}/{GATEWAY_ID} (site broker {self.broker.bind}:"
                 f"{self.broker.port}; behind it: {nodes}):"]
        status = self.final if self.final is not None else (
            self.watch.last() if self.watch else None)
        lines.append(f"  {describe(status)}")
        if ledger is not None:
            received, duplicates, missing = ledger
            lines.append(f"  its nodes' ledger (2 h): received {received}, duplicates "
                         f"{duplicates}, missing {missing}")
        return lines

    def closing(self) -> str:
        """The line printed after the stop."""
        how = "not started" if self.exit_code is None else f"stopped with exit code {self.exit_code}"
        return f"site gateway {self.site}/{GATEWAY_ID}: {how}; {describe(self.final)}"


def describe(status: dict[str, Any] | None) -> str:
    """A gateway status in one line: its state, links and counters."""
    if status is None:
        return "no status yet"
    health = status.get("health") or {}
    counters = health.get("gateway") or {}
    if not counters:
        return str(status.get("state", "?"))
    state = str(status.get("state"))
    if state == "online":  # an offline status's links are those of its last moment
        state += " (" + ", ".join(
            f"{name.removesuffix('_mqtt')} broker "
            f"{'subscribed' if health.get(name, {}).get('subscribed') else 'down'}"
            for name in ("site_mqtt", "cloud_mqtt")) + ")"
    trouble = [f"{counters[k]} {k.replace('_', ' ')}" for k in
               ("relays_expired", "relays_refused", "refused", "too_large") if counters.get(k)]
    return (f"{state}; relays {counters.get('relays_sent', 0)} sent, "
            f"{counters.get('relays_acked', 0)} acknowledged by the cloud, "
            f"{counters.get('relays_in_flight', 0)} in flight; "
            f"{counters.get('messages_relayed', 0)} node messages relayed, "
            f"{counters.get('node_acks', 0)} node batches acknowledged"
            + (f"; {', '.join(trouble)}" if trouble else ""))
