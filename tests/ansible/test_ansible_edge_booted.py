"""The real `ansible/edge.yml`, run by ansible-playbook over SSH against a Debian 12 node
booted with systemd as PID 1 (systemd-nspawn; tests/ansible/booted_node.py), whose broker is
a private stack's Mosquitto on this machine. The other Ansible tests render templates and run
single task files here; this one runs the whole play and the unit under a real systemd.

Checked: the play converges; `urbanpulse-edge` is active under systemd as `urbanpulse`,
without capabilities, with no_new_privs, the system-call filter and a read-only root where
only /var/lib/urbanpulse is writable, and it writes its state there (`edge status`, as the
README's verification step runs it, answers from it); its clock check (the role's default
"kernel") is answered through the unit's filter and agrees with this machine's kernel (the
same kernel: a test machine has no NTP, so the readings carry clock_unsynced); readings of a
bed pad on gpiozero's mock pins reach the broker; a second run of the play changes nothing
and leaves the agent running; an inventory whose node.toml `check-config` refuses stops the
play at that task and leaves the node's config and agent as they were; a new sensor in the
inventory restarts the agent with it; a wheel rebuilt with the same version replaces the
installed build; after a reboot the agent starts by itself and publishes again.

Not checked here: MemoryMax=, TasksMax= and the device policy. On a host with cgroup v1
controllers (this workplace's machines) the container's systemd gets no memory, pids or
devices controller of its own: it records the settings and cannot apply them.

Opt-in: set URBANPULSE_BOOTED_NODE=1 (CI's .ci/run does). It needs root, debootstrap,
systemd-container, iproute2 and an SSH client. The node's image is made once (debootstrap
from Debian's mirror, about a minute) and the edge extra's wheels downloaded once, both kept
in URBANPULSE_ROOTFS_CACHE (default /var/cache/urbanpulse-tests); with them a run takes
about 80 s.

The node cannot reach a package mirror or index (its only link is the veth pair to this
machine): the image carries the role's apt packages with fresh lists, and pip on the node
installs from the cached wheels (/etc/pip.conf: no index, find-links); the project itself
comes as a wheel built from this checkout (`urbanpulse_wheel_src`, as the README offers).
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from edge.agent import OUTBOX_FILE, STATE_FILE
from edge.clock_sync import CLOCK_UNSYNCED, KernelClockSync
from tests.ansible.booted_node import (
    PLAY_TIMEOUT_S,
    BootedNode,
    TcpRelay,
    ansible_env,
    assert_hardened,
    assert_no_change,
    booted_node,
    cache_dir,
    cached_rootfs,
    cached_wheels,
    extra_requirements,
    fresh_apt_lists,
    missing_requirements,
    node_files,
    node_network,
    play,
    running_unit,
    ssh_host_vars,
)
from tests.ansible.helpers import ANSIBLE, REPO
from tests.ansible.test_ansible_playbooks import _ansible_tool
from urbanpulse.mqtt import close_client, connect_and_wait, make_client
from urbanpulse.stack import StackConfig, StackInfo, add_node, down, up
from urbanpulse.stack.layout import Layout
from urbanpulse.stack.process import free_ports
from urbanpulse.testing import wait_for
from urbanpulse.wire import Reading, decode_batch, parse_topic

OPT_IN = "URBANPULSE_BOOTED_NODE"
pytestmark = [
    pytest.mark.stack,
    pytest.mark.slow,
    pytest.mark.timeout(1200),
    pytest.mark.skipif(os.environ.get(OPT_IN) != "1",
                       reason=f"opt-in: {OPT_IN}=1 (boots a Debian 12 node; see the docstring)"),
]

SITE, NODE = "hn-test", "booted-1"
HOST = "booted-node"
SENSOR = "bed-01"
MQTT_NAME = "mqtt.urbanpulse.test"  # what the broker's certificate names, as a deployed one
MQTT_PORT = 8883
SERVICE = "urbanpulse-edge"
STATE_DIR = "/var/lib/urbanpulse"
EDGE_BIN = "/opt/urbanpulse/venv/bin/urbanpulse"


def _seed_tls(layout: Layout) -> None:
    """A CA and a broker certificate that also names MQTT_NAME, where the stack keeps its
    own: `up` keeps a certificate its CA signed, so Mosquitto serves this one."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.now(UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "booted-node test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=365))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .sign(ca_key, hashes.SHA256()))
    names = [x509.DNSName(MQTT_NAME), x509.DNSName("localhost"),
             x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, MQTT_NAME)]))
            .issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=365))
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .sign(ca_key, hashes.SHA256()))

    def pem_key(k: ec.EllipticCurvePrivateKey) -> bytes:
        return k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                               serialization.NoEncryption())

    layout.tls_dir.mkdir(parents=True, mode=0o700)
    for path, data, mode in ((layout.ca_key, pem_key(ca_key), 0o600),
                             (layout.ca_cert, ca.public_bytes(serialization.Encoding.PEM), 0o644),
                             (layout.server_key, pem_key(key), 0o600),
                             (layout.server_cert, cert.public_bytes(serialization.Encoding.PEM), 0o644)):
        path.write_bytes(data)
        path.chmod(mode)


MARKER = "urbanpulse/booted-node-build.txt"  # in a wheel's package data: which build it is


def _build_wheel(out: Path, build: str) -> Path:
    """A wheel of this checkout (same version whatever `build` says), built from a copy (a
    build in place writes build/ into the shared work tree)."""
    src = out / "src"
    src.mkdir(parents=True)
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(REPO / name, src / name)
    for package in ("urbanpulse", "edge", "cloud", "firmware_bridge"):
        shutil.copytree(REPO / package, src / package,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    (src / MARKER).write_text(build)
    dist = out / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir",
                    str(dist), str(src)], check=True, capture_output=True, timeout=300)
    (wheel,) = dist.glob("urbanpulse-*.whl")
    return wheel


class Collector:
    """The node's data as the cloud user sees it on the broker."""

    def __init__(self, info: StackInfo) -> None:
        self.readings: list[Reading] = []
        self._lock = threading.Lock()
        self.client = make_client(f"booted-collector-{os.getpid()}", info.mqtt("cloud"),
                                  clean_start=True)
        self.client.on_message = self._on_message

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        if parse_topic(msg.topic).stream == "data":
            batch = decode_batch(msg.payload)
            with self._lock:
                self.readings.extend(batch.readings)

    def start(self) -> None:
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *a: subscribed.set()
        connect_and_wait(self.client)
        self.client.subscribe(f"urbanpulse/v1/{SITE}/{NODE}/+", qos=1)
        assert subscribed.wait(10), "subscription not acknowledged"

    def of(self, sensor: str) -> list[Reading]:
        with self._lock:
            return [r for r in self.readings if r.sensor == sensor]

    def stop(self) -> None:
        close_client(self.client)


@dataclass
class Provisioned:
    node: BootedNode
    stack: StackInfo
    collector: Collector
    playbook: list[str]
    env: dict[str, str]
    first_run: subprocess.CompletedProcess[str]
    work: Path
    wheel: Path  # the build the node has
    # inventory(wheel, name, sensors=more, **bed-01's settings) -> another inventory of the node
    inventory: Callable[..., Path]


def _inventory(work: Path, info: StackInfo, node: BootedNode, password: str, wheel: Path,
               name: str = "inventory.yml", sensors: Sequence[Mapping[str, object]] = (),
               **sensor_settings: object) -> Path:
    host = {
        **ssh_host_vars(node),
        "edge_node_id": NODE,
        "edge_location": "booted test node",
        "edge_gpio_backend": "mock",
        "edge_heartbeat_s": 2,
        "edge_sensors": [{"id": SENSOR, "driver": "bed_pad", "pin": 22, "pull": "up",
                          "active_state": "low", "occupied_when": "closed",
                          "supervision": "none", "heartbeat_s": 1, **sensor_settings},
                         *sensors],
        "vault_edge_mqtt_password": password,
    }
    inventory = {"all": {
        "vars": {"urbanpulse_mqtt_host": MQTT_NAME, "urbanpulse_mqtt_port": MQTT_PORT,
                 "urbanpulse_ca_cert_src": str(info.ca_file),
                 "urbanpulse_wheel_src": str(wheel)},
        "children": {"edge": {"children": {"site_test": {
            "vars": {"edge_site": SITE}, "hosts": {HOST: host}}}}},
    }}
    path = work / name  # JSON is YAML
    path.write_text(json.dumps(inventory, indent=2))
    path.chmod(0o600)
    return path


@pytest.fixture(scope="module")
def provisioned(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Provisioned]:
    missing = missing_requirements()
    assert not missing, f"{OPT_IN}=1 but this machine lacks {missing} (see the module docstring)"
    cache = cache_dir()
    rootfs = cached_rootfs(cache)
    wheels = cached_wheels(cache, extra_requirements("edge"))
    work = tmp_path_factory.mktemp("booted-node")
    wheel = _build_wheel(work / "wheel", "first")

    home = work / "urbanpulse-home"
    mqtt_port, cloud_port, influx_port, rpc_port = free_ports(4)
    config = StackConfig(home=home, mqtt_port=mqtt_port, mqtt_cloud_port=cloud_port,
                         influx_port=influx_port, influx_rpc_port=rpc_port)
    _seed_tls(Layout(home))
    try:
        info = up(config)
        creds = add_node(config, SITE, NODE)
        with node_network() as net:
            files = node_files(HOST, f"127.0.0.1\tlocalhost\n127.0.1.1\t{HOST}\n"
                                     f"{net.host_addr}\t{MQTT_NAME}\n", wheels)
            relay = TcpRelay(net.host_addr, MQTT_PORT, mqtt_port)
            relay.start()  # on the veth's address, which exists from here on
            try:
                with booted_node(rootfs, work / "node", files, net) as node:
                    fresh_apt_lists(node)
                    collector = Collector(info)
                    collector.start()
                    env = ansible_env(work)
                    inventory = functools.partial(_inventory, work, info, node, creds.password())
                    argv = [_ansible_tool("ansible-playbook"), "-i", str(inventory(wheel)), "edge.yml"]
                    try:
                        yield Provisioned(node, info, collector, argv, env, play(argv, env), work,
                                          wheel, inventory)
                    finally:
                        collector.stop()
            finally:
                relay.stop()
    finally:
        down(config)


def _running_unit(node: BootedNode) -> dict[str, str]:
    return running_unit(node, SERVICE)


def test_the_play_starts_the_agent_under_systemd_with_its_hardening(provisioned: Provisioned) -> None:
    node = provisioned.node
    unit = _running_unit(node)
    assert unit["User"] == "urbanpulse"
    assert unit["NRestarts"] == "0", "the agent is being restarted by systemd"
    assert_hardened(node, unit["MainPID"], "urbanpulse", STATE_DIR, "agent")


def test_the_agent_keeps_its_state_and_edge_status_reads_it(provisioned: Provisioned) -> None:
    node = provisioned.node
    _running_unit(node)
    # StateDirectoryMode=0750 and UMask=0027: the agent's files are its own and its group's.
    modes = node.run(f"sudo stat -c '%n %a %U %G' {STATE_DIR} {STATE_DIR}/{STATE_FILE} "
                     f"{STATE_DIR}/{OUTBOX_FILE}").splitlines()
    assert modes == [f"{STATE_DIR} 750 urbanpulse urbanpulse",
                     f"{STATE_DIR}/{STATE_FILE} 640 urbanpulse urbanpulse",
                     f"{STATE_DIR}/{OUTBOX_FILE} 640 urbanpulse urbanpulse"], modes

    def connected() -> dict[str, Any] | None:
        body: dict[str, Any] = json.loads(node.run(
            f"sudo -u urbanpulse {EDGE_BIN} edge status --config /etc/urbanpulse/node.toml --json"))
        health = body.get("agent", {}).get("health", {})
        return body if (health.get("mqtt") or {}).get("connected") is True else None

    body = wait_for(connected, 60, "edge status: connected to the broker", every_s=1.0)
    assert body["agent"]["drivers"][SENSOR]["state"] == "running", body["agent"]["drivers"]
    # The clock check ran through the unit's system-call filter and says what this
    # machine's kernel says (one kernel under both).
    assert body["agent"]["health"]["clock"]["synchronised"] is KernelClockSync().synchronised()


def test_readings_of_the_mock_sensor_reach_the_broker(provisioned: Provisioned) -> None:
    collector = provisioned.collector
    readings = wait_for(lambda: collector.of(SENSOR) if len(collector.of(SENSOR)) >= 3 else None,
                        90, f"3 readings of {SENSOR} at the broker", every_s=0.5)
    assert len({r.seq for r in readings}) >= 3
    unsynced = not KernelClockSync().synchronised()
    assert all((CLOCK_UNSYNCED in r.flags) is unsynced for r in readings), [r.flags for r in readings]


def test_a_second_run_changes_nothing_and_keeps_the_agent(provisioned: Provisioned) -> None:
    before = _running_unit(provisioned.node)
    again = play(provisioned.playbook, provisioned.env)
    assert_no_change(again, HOST)
    after = _running_unit(provisioned.node)
    assert after["MainPID"] == before["MainPID"], "the second run restarted the agent"
    # `--check`, the README's dry run, says so too (the pip module alone cannot tell in check
    # mode whether a wheel file is installed: the role asks the virtualenv's record).
    dry = play([*provisioned.playbook, "--check"], provisioned.env)
    assert_no_change(dry, HOST)
    assert _running_unit(provisioned.node)["MainPID"] == before["MainPID"]


def test_a_config_the_node_refuses_stops_the_play_and_leaves_the_agent(provisioned: Provisioned) -> None:
    node = provisioned.node
    before = _running_unit(node)
    config_before = node.run("sudo sha256sum /etc/urbanpulse/node.toml")
    bad = provisioned.inventory(provisioned.wheel, "inventory-bad.yml",
                                heartbeat_s=0)  # check-config wants >= 0.1
    out = subprocess.run([*provisioned.playbook[:2], str(bad), *provisioned.playbook[3:]],
                         cwd=ANSIBLE, env=provisioned.env, capture_output=True, text=True,
                         timeout=PLAY_TIMEOUT_S, check=False)
    assert out.returncode != 0, out.stdout[-6000:]
    failed = out.stdout[out.stdout.index("fatal:") - 300:] if "fatal:" in out.stdout else out.stdout
    assert "Write node.toml" in failed, failed[-6000:]
    assert "heartbeat_s" in failed, failed[-6000:]
    assert node.run("sudo sha256sum /etc/urbanpulse/node.toml") == config_before
    assert _running_unit(node)["MainPID"] == before["MainPID"], "the refused config restarted the agent"


def _play_with(provisioned: Provisioned, inventory: Path) -> subprocess.CompletedProcess[str]:
    return play([*provisioned.playbook[:2], str(inventory), *provisioned.playbook[3:]],
                 provisioned.env)


def test_a_rebuilt_wheel_of_the_same_version_is_installed_and_run(provisioned: Provisioned) -> None:
    """The technician's usual upgrade (README, step 5): a wheel built from a newer checkout,
    whose version in pyproject.toml has not changed."""
    node = provisioned.node
    before = _running_unit(node)
    site_packages = node.run(f"{EDGE_BIN.rsplit('/', 1)[0]}/python -c "
                             "'import sysconfig; print(sysconfig.get_paths()[\"purelib\"])'").strip()
    assert node.run(f"cat {site_packages}/{MARKER}") == "first"
    rebuilt = _build_wheel(provisioned.work / "wheel-rebuilt", "rebuilt")
    _play_with(provisioned, provisioned.inventory(rebuilt, "inventory-rebuilt.yml"))
    provisioned.wheel = rebuilt  # what the node has from here on
    assert node.run(f"cat {site_packages}/{MARKER}") == "rebuilt", "the node runs the old build"
    assert _running_unit(node)["MainPID"] != before["MainPID"], "the agent still runs the old code"


def test_a_new_sensor_in_the_inventory_restarts_the_agent_with_it(provisioned: Provisioned) -> None:
    node, collector = provisioned.node, provisioned.collector
    before = _running_unit(node)
    door = {"id": "door-01", "driver": "door_counter", "pin": 5, "pull": "up",
            "active_state": "low", "interval_s": 1}
    _play_with(provisioned, provisioned.inventory(provisioned.wheel, "inventory-door.yml",
                                                  sensors=[door]))
    assert _running_unit(node)["MainPID"] != before["MainPID"], "the agent was not restarted"
    wait_for(lambda: len(collector.of("door-01")) >= 2, 60, "readings of the new sensor door-01",
             every_s=0.5)


def test_after_a_reboot_the_agent_starts_by_itself_and_publishes(provisioned: Provisioned) -> None:
    node, collector = provisioned.node, provisioned.collector
    rebooted_ns = time.time_ns()
    status = node.reboot()
    assert status == 133, f"systemd-nspawn exited {status}, not as for a reboot (133)"
    _running_unit(node)
    wait_for(lambda: len([r for r in collector.of(SENSOR) if r.ts_ns > rebooted_ns]) >= 2, 60,
             f"readings of {SENSOR} made after the reboot at the broker", every_s=0.5)
