"""The real `ansible/cloud.yml`, run by ansible-playbook over SSH against a Debian 12 node
booted with systemd as PID 1 (systemd-nspawn; tests/ansible/booted_node.py), which is the
broker, the InfluxDB host and the processor at once (one host in the `broker`, `influxdb` and
`processor` groups). The other Ansible tests render the central roles' templates and run the
influxdb role's users tasks alone; this one runs the three plays and their units under a real
systemd, against Debian's own mosquitto and influxdb packages.

Checked: the plays converge; mosquitto, influxdb and urbanpulse-cloud are active under
systemd, the processor as `urbanpulse` without capabilities, with no_new_privs, its
system-call filter and a read-only root but for its state directory; the broker refuses a
node's user on the cloud's port and the cloud's user on the nodes' port (each logs in on its
own); a node (a paho client on this machine, with the node user's password from the
inventory, over the veth pair) publishes a batch, the processor's ingest journals it and acks
it on the node's ack topic, and the reading lands in InfluxDB, read back over HTTPS by the
reader with the certificate checked against the CA (the reader may not write); a second run
changes nothing and restarts none of the three services, nor does a `--check` run say it
would; what is published while the processor is down waits for it, across a restart of the
broker; a node added to the inventory is let in by a reload (no service restarted); after a
reboot the three services start by themselves and data flows.

Left out: the Grafana play (its role installs Grafana from Grafana's own apt repository,
which this machine cannot reach; the inventory's `grafana` group is empty, so cloud.yml skips
it). Not checked: MemoryHigh=, MemoryMax= and TasksMax= of the processor's unit (on a host
with cgroup v1 controllers the container's systemd cannot apply them, as for the edge node).

The certificates name the node's address as well as the names the processor uses (which the
node's /etc/hosts maps to its loopback), so that this machine, which has no such names, checks
them too when it connects to the node's address.

Opt-in with the edge node's switch: URBANPULSE_BOOTED_NODE=1 (CI's .ci/run sets it); same
needs (root, debootstrap, systemd-container, iproute2, an SSH client). The node's image
(the edge node's packages plus mosquitto and influxdb) and the cloud extra's wheels are cached
in URBANPULSE_ROOTFS_CACHE beside the edge node's, under names of their own; the node reaches
no mirror or index, as the edge node.
"""

from __future__ import annotations

import ipaddress
import json
import os
import secrets
import subprocess
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from tests.ansible.booted_node import (
    BootedNode,
    ansible_env,
    assert_hardened,
    assert_no_change,
    booted_node,
    cache_dir,
    cached_cloud_rootfs,
    cached_cloud_wheels,
    extra_requirements,
    fresh_apt_lists,
    missing_requirements,
    node_files,
    node_network,
    play,
    running_unit,
    ssh_host_vars,
)
from tests.ansible.test_ansible_edge_booted import OPT_IN, _build_wheel
from tests.ansible.test_ansible_playbooks import _ansible_tool
from urbanpulse.influx_http import InfluxError, InfluxHTTP
from urbanpulse.mqtt import MqttConnectError, close_client, connect_and_wait, make_client
from urbanpulse.stack.config import MqttCredentials
from urbanpulse.testing import wait_for
from urbanpulse.wire import Reading, encode_batch
from urbanpulse.wire.payload import decode_ack
from urbanpulse.wire.topics import ack_topic, data_topic

pytestmark = [
    pytest.mark.stack,
    pytest.mark.slow,
    pytest.mark.timeout(1200),
    pytest.mark.skipif(os.environ.get(OPT_IN) != "1",
                       reason=f"opt-in: {OPT_IN}=1 (boots a Debian 12 node; see the docstring)"),
]

HOST = "central"
SITE, NODE, SENSOR = "hn-test", "sensor-1", "co2-1"
MQTT_NAME, INFLUX_NAME = "mqtt.urbanpulse.test", "influx.urbanpulse.test"
NODES_PORT, CLOUD_PORT, INFLUX_PORT = 8883, 8884, 8086
DATABASE = "urbanpulse"
PROCESSOR = "urbanpulse-cloud"
SERVICES = ("mosquitto", "influxdb", PROCESSOR)
STATE_DIR = "/var/lib/urbanpulse-cloud"


def _write_tls(folder: Path, node_addr: str) -> dict[str, Path]:
    """A CA, and the broker's and InfluxDB's certificates (for their names and `node_addr`)
    and keys signed by it."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.now(UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "booted cloud test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=30))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .sign(ca_key, hashes.SHA256()))
    folder.mkdir(mode=0o700)
    paths = {"ca": folder / "ca.pem"}
    paths["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    for name, dns in (("mqtt", MQTT_NAME), ("influx", INFLUX_NAME)):
        key = ec.generate_private_key(ec.SECP256R1())
        alt = x509.SubjectAlternativeName(
            [x509.DNSName(dns), x509.IPAddress(ipaddress.ip_address(node_addr))])
        cert = (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, dns)]))
                .issuer_name(ca_name).public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - timedelta(minutes=5))
                .not_valid_after(now + timedelta(days=30))
                .add_extension(alt, critical=False).sign(ca_key, hashes.SHA256()))
        paths[f"{name}-cert"] = folder / f"{name}-server.pem"
        paths[f"{name}-key"] = folder / f"{name}-server.key"
        paths[f"{name}-cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        paths[f"{name}-key"].write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()))
        paths[f"{name}-key"].chmod(0o600)
    return paths


def _inventory(path: Path, node: BootedNode, tls: dict[str, Path], wheel: Path,
               secret: dict[str, str], more_nodes: Mapping[str, str] = {}) -> Path:
    """`more_nodes`: node id -> password, edge nodes besides NODE."""
    central = ssh_host_vars(node)
    inventory = {"all": {
        "vars": {
            "urbanpulse_mqtt_host": MQTT_NAME,
            "urbanpulse_mqtt_port": NODES_PORT,
            "urbanpulse_mqtt_cloud_port": CLOUD_PORT,
            "urbanpulse_influx_url": f"https://{INFLUX_NAME}:{INFLUX_PORT}",
            "urbanpulse_ca_cert_src": str(tls["ca"]),
            "urbanpulse_wheel_src": str(wheel),
            "mosquitto_server_cert_src": str(tls["mqtt-cert"]),
            "mosquitto_server_key_src": str(tls["mqtt-key"]),
            "influxdb_server_cert_src": str(tls["influx-cert"]),
            "influxdb_server_key_src": str(tls["influx-key"]),
            "vault_mqtt_cloud_password": secret["cloud"],
            "vault_influx_admin_password": secret["admin"],
            "vault_influx_writer_password": secret["writer"],
            "vault_influx_reader_password": secret["reader"],
        },
        "children": {
            # Nodes the broker must know; the play never connects to them.
            "edge": {"children": {"site_test": {"vars": {"edge_site": SITE}, "hosts": {
                f"edge-{node_id}": {"edge_node_id": node_id, "vault_edge_mqtt_password": password}
                for node_id, password in {NODE: secret["node"], **more_nodes}.items()}}}},
            "cloud": {"children": {
                "broker": {"hosts": {HOST: central}},
                "influxdb": {"hosts": {HOST: None}},
                "processor": {"hosts": {HOST: None}},
                "grafana": {"hosts": {}},  # left out: its apt repository is out of reach
            }},
        },
    }}
    path.write_text(json.dumps(inventory, indent=2))  # JSON is YAML
    path.chmod(0o600)
    return path


@dataclass
class Central:
    node: BootedNode
    playbook: list[str]
    env: dict[str, str]
    first_run: subprocess.CompletedProcess[str]
    tls: dict[str, Path]
    secret: dict[str, str]
    work: Path
    # inventory(path, more_nodes) -> the same central host with more edge nodes
    inventory: Callable[..., Path]

    def mqtt(self, user: str, port: int, secret: str | None = None) -> MqttCredentials:
        password = self.work / f"{user}.password"
        password.write_text(secret or self.secret["cloud" if user == "cloud" else "node"])
        password.chmod(0o600)
        return MqttCredentials(host=self.node.addr, port=port, ca_file=self.tls["ca"], username=user,
                               password_file=password)

    def influx(self, user: str) -> InfluxHTTP:
        return InfluxHTTP(f"https://{self.node.addr}:{INFLUX_PORT}", user, self.secret[user],
                          ca_file=self.tls["ca"])


@pytest.fixture(scope="module")
def central(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Central]:
    missing = missing_requirements()
    assert not missing, f"{OPT_IN}=1 but this machine lacks {missing} (see the module docstring)"
    cache = cache_dir()
    rootfs = cached_cloud_rootfs(cache)
    wheels = cached_cloud_wheels(cache, extra_requirements("cloud"))
    work = tmp_path_factory.mktemp("booted-cloud")
    wheel = _build_wheel(work / "wheel", "cloud")
    secret = {who: secrets.token_urlsafe(24)
              for who in ("cloud", "node", "admin", "writer", "reader")}
    # The processor and the influxdb role reach the broker and InfluxDB by the names their
    # certificates carry, here on this very host.
    files = node_files(HOST, f"127.0.0.1\tlocalhost {MQTT_NAME} {INFLUX_NAME}\n127.0.1.1\t{HOST}\n",
                       wheels)
    with node_network() as net:
        tls = _write_tls(work / "tls", net.node_addr)
        with booted_node(rootfs, work / "node", files, net) as node:
            fresh_apt_lists(node)
            env = ansible_env(work)
            inventory = partial(_inventory, node=node, tls=tls, wheel=wheel, secret=secret)
            argv = [_ansible_tool("ansible-playbook"), "-i", str(inventory(work / "inventory.yml")),
                    "cloud.yml"]
            yield Central(node, argv, env, play(argv, env), tls, secret, work, inventory)


def test_the_plays_start_the_three_services_under_systemd(central: Central) -> None:
    node = central.node
    for service in SERVICES:
        unit = running_unit(node, service)
        assert unit["NRestarts"] == "0", f"{service} is being restarted by systemd"
    # Started once: not started, then restarted by the handler a moment later.
    starts = node.run(f"sudo journalctl -u {PROCESSOR} -o cat --no-pager").splitlines()
    assert len([line for line in starts if line.startswith("Started ")]) == 1, starts
    listening = node.run("ss -Hltn").split()
    for port in (NODES_PORT, CLOUD_PORT, INFLUX_PORT):
        assert any(word.endswith(f":{port}") for word in listening), (port, listening)


def test_the_processor_runs_with_its_hardening(central: Central) -> None:
    node = central.node
    unit = running_unit(node, PROCESSOR)
    assert unit["User"] == "urbanpulse"
    assert_hardened(node, unit["MainPID"], "urbanpulse", STATE_DIR, "processor")
    assert node.run(f"sudo stat -c '%a %U %G' {STATE_DIR}").split() == ["750", "urbanpulse",
                                                                         "urbanpulse"]


def _connects(creds: MqttCredentials, client_id: str) -> str:
    """'accepted' or the broker's refusal."""
    client = make_client(client_id, creds, clean_start=True)
    try:
        connect_and_wait(client)
    except MqttConnectError as exc:
        return str(exc)
    close_client(client)
    return "accepted"


def test_each_listener_takes_its_own_users_only(central: Central) -> None:
    node_user = f"{SITE}.{NODE}"
    assert _connects(central.mqtt(node_user, NODES_PORT), "probe-node") == "accepted"
    assert _connects(central.mqtt("cloud", CLOUD_PORT), "probe-cloud") == "accepted"
    refused = _connects(central.mqtt(node_user, CLOUD_PORT), "probe-node-on-cloud")
    assert "refused the connection: Not authorized" in refused, refused
    refused = _connects(central.mqtt("cloud", NODES_PORT), "probe-cloud-on-nodes")
    assert "refused the connection: Not authorized" in refused, refused


def _reading(seq: int, co2: float) -> Reading:
    now = datetime.now(UTC)
    return Reading(sensor=SENSOR, kind="air.co2", ts_ns=int(now.timestamp() * 1e6) * 1000, seq=seq,
                   values={"co2": co2})


def _publish(central: Central, node_id: str, reading: Reading, *, secret: str | None = None,
             await_ack_s: float | None = 60) -> str:
    """Publish a batch of `reading` as node `node_id` on the nodes' port (QoS 1, once the
    broker has it) and, unless `await_ack_s` is None, wait for the processor's ack of it.
    Returns the batch id."""
    batch = f"{secrets.token_hex(8)}.{reading.seq}"
    acks: list[str] = []
    acked, subscribed = threading.Event(), threading.Event()

    def on_message(client: Any, userdata: Any, msg: Any) -> None:
        acks.extend(decode_ack(msg.payload))
        if batch in acks:
            acked.set()

    client = make_client("any-id", central.mqtt(f"{SITE}.{node_id}", NODES_PORT, secret),
                         clean_start=True)
    client.on_message = on_message
    client.on_subscribe = lambda *a: subscribed.set()
    connect_and_wait(client)
    try:
        client.subscribe(ack_topic(SITE, node_id), qos=1)
        assert subscribed.wait(10), "ack subscription not acknowledged"
        sent = client.publish(data_topic(SITE, node_id),
                              encode_batch(SITE, node_id, [reading], batch), qos=1)
        sent.wait_for_publish(10)
        assert sent.is_published(), "the broker did not take the batch"
        if await_ack_s is not None:
            assert acked.wait(await_ack_s), f"no ack of {batch} from the processor; acks: {acks}"
    finally:
        close_client(client)
    return batch


def _stored(central: Central, node_id: str, reading: Reading) -> None:
    """Wait for `reading` of `node_id` in InfluxDB, read by the reader over HTTPS (the
    certificate checked against the CA)."""
    query = (f"SELECT co2, seq FROM air_co2 WHERE site = '{SITE}' AND node = '{node_id}' "
             f"AND sensor = '{SENSOR}' AND seq = {reading.seq}")
    with central.influx("reader") as reader:
        rows = wait_for(lambda: reader.query_points(query, db=DATABASE), 60,
                        f"reading {reading.seq} of {node_id} in InfluxDB", every_s=0.5)
    assert rows == [{"time": reading.ts_ns + reading.seq % 1000, "co2": reading.values["co2"],
                     "seq": reading.seq}], rows


def test_a_node_batch_is_journaled_acked_and_lands_in_influxdb(central: Central) -> None:
    reading = _reading(1, 612.0)
    batch = _publish(central, NODE, reading)
    journaled = central.node.run(
        "sudo python3 -c 'import sqlite3, sys; db = sqlite3.connect(sys.argv[1]); "
        "print(sum(sys.argv[2].encode() in bytes(p) for (p,) in "
        "db.execute(\"SELECT payload FROM entries WHERE topic = ?\", (sys.argv[3],))))' "
        f"{STATE_DIR}/journal/journal-i0.sqlite3 {batch} {data_topic(SITE, NODE)}")
    assert journaled.strip() == "1", journaled
    _stored(central, NODE, reading)
    with central.influx("reader") as reader, pytest.raises(InfluxError) as refused:
        reader.write(b"probe value=1", db=DATABASE)
    assert refused.value.status == 403, refused.value


def test_a_second_run_changes_nothing_and_restarts_nothing(central: Central) -> None:
    node = central.node
    before = {service: running_unit(node, service)["MainPID"] for service in SERVICES}
    again = play(central.playbook, central.env)
    assert_no_change(again, HOST)
    after = {service: running_unit(node, service)["MainPID"] for service in SERVICES}
    assert after == before, "the second run restarted a service"


def test_a_check_run_reports_no_change(central: Central) -> None:
    """`--check` (the README's dry run) on the provisioned host: it runs through and says
    nothing would change."""
    node = central.node
    before = {service: running_unit(node, service)["MainPID"] for service in SERVICES}
    dry = play([*central.playbook, "--check"], central.env)
    assert_no_change(dry, HOST)
    assert {service: running_unit(node, service)["MainPID"] for service in SERVICES} == before


def test_what_the_processor_misses_while_down_waits_for_it_across_a_broker_restart(
        central: Central) -> None:
    """The reason for refusing Mosquitto 2.0.12-2.0.22 (README): with the role's
    per_listener_settings, the broker keeps what is published for the processor's
    persistent session while it is away, here even across a restart of the broker."""
    node = central.node
    node.run(f"sudo systemctl stop {PROCESSOR}")
    try:
        reading = _reading(2, 640.0)
        _publish(central, NODE, reading, await_ack_s=None)
        node.run("sudo systemctl restart mosquitto")
        running_unit(node, "mosquitto")
    finally:
        node.run(f"sudo systemctl start {PROCESSOR}")
    _stored(central, NODE, reading)


def test_a_new_node_in_the_inventory_is_let_in_without_restarting_the_broker(
        central: Central) -> None:
    """README step 4: the broker reloads (the processor keeps its session) and the new
    node's batches are acked and stored."""
    node = central.node
    before = {service: running_unit(node, service)["MainPID"] for service in SERVICES}
    password = secrets.token_urlsafe(24)
    inventory = central.inventory(central.work / "inventory-new-node.yml",
                                  more_nodes={"sensor-2": password})
    play([*central.playbook[:2], str(inventory), *central.playbook[3:]], central.env)
    after = {service: running_unit(node, service)["MainPID"] for service in SERVICES}
    assert after == before, "adding a node restarted a service"
    reading = _reading(3, 655.0)
    _publish(central, "sensor-2", reading, secret=password)
    _stored(central, "sensor-2", reading)


def test_after_a_reboot_the_services_start_by_themselves_and_data_flows(central: Central) -> None:
    node = central.node
    status = node.reboot()
    assert status == 133, f"systemd-nspawn exited {status}, not as for a reboot (133)"
    for service in SERVICES:
        running_unit(node, service)
    reading = _reading(4, 670.0)
    _publish(central, NODE, reading)
    _stored(central, NODE, reading)
