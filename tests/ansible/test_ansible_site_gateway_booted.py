"""The real `ansible/gateway.yml` (the site_gateway role), run by ansible-playbook over SSH
against a Debian 12 node booted with systemd as PID 1 (systemd-nspawn;
tests/ansible/booted_node.py): the site's broker and the gateway on one host, as a site's
gateway machine has them. The cloud's broker is a Mosquitto on this machine (the gateway
tests' CloudBroker: TLS, the gateway's node user with its relay topic, the cloud's user)
reached from the node on its veth address, and this test plays the cloud (TestCloud): it
decodes each relay and acknowledges it, as the cloud's ingest does once it journaled it.

Checked: the play converges; mosquitto and urbanpulse-gateway are active under systemd,
the gateway started once and connected at its first attempt; the broker runs as
`mosquitto`, the gateway as `urbanpulse` without capabilities, with no_new_privs, its
system-call filter and a read-only root but for its state directory; the secrets on the
host (the gateway's two passwords, the broker's key, its hashed password file and their
digest) are root's, readable by their service's group
only (0640) or by root only (0600), none readable by another user, and no clear password
is in the broker's files; the site broker listens on its port (8883) on all addresses, as
the role's default `gateway_site_mqtt_bind` says (the nodes reach it over the site's
network), Debian's default listener (1883) is gone, nothing else listens but SSH, and it
takes a node's password from the inventory over TLS at the node's address while refusing
a wrong one; end to end, a batch published on the site broker as a node of the site (its
user and password as the role makes them) reaches the cloud's broker in a relay from the
gateway, the cloud's ack of that relay comes back to the node as an ack of its batch on the
site broker, and the gateway's own status on the cloud's broker says "online"; a second run
changes nothing and restarts neither service, nor does a `--check` run say it would; after
a reboot both start by themselves and a batch is relayed and acked again. The gateway's
journal must not say "cannot connect": on a first run the role started it before its broker
had the role's config (fixed: the role applies the broker's changes first).

Not checked here: MemoryMax= and TasksMax= of the gateway's unit (cgroup v1 on this
workplace's machines, as for the edge node).

Opt-in with the edge node's switch: URBANPULSE_BOOTED_NODE=1 (CI's .ci/run sets it); same
needs (root, debootstrap, systemd-container, iproute2, an SSH client). The node's image is
the edge node's with Debian's mosquitto (the role's apt package: the node reaches no
mirror), cached in URBANPULSE_ROOTFS_CACHE under a name of its own; the wheels are the edge
node's (urbanpulse[edge]).
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.ansible.booted_node import (
    BootedNode,
    TcpRelay,
    ansible_env,
    assert_hardened,
    assert_no_change,
    booted_node,
    cache_dir,
    cached_gateway_rootfs,
    cached_wheels,
    extra_requirements,
    fresh_apt_lists,
    missing_requirements,
    node_files,
    node_network,
    play,
    running_unit,
    ssh_host_vars,
    status_fields,
)
from tests.ansible.mqtt_certs import Ca
from tests.ansible.test_ansible_edge_booted import MQTT_NAME, OPT_IN, _build_wheel, _seed_tls
from tests.ansible.test_ansible_playbooks import _ansible_tool
from tests.edge.gateway.conftest import CloudBroker, TestCloud
from urbanpulse.mqtt import MqttConnectError, close_client, connect_and_wait, make_client
from urbanpulse.stack.config import MqttCredentials
from urbanpulse.stack.layout import Layout
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

HOST = "site-gw"
SITE, GW, NODE, SENSOR = "hn-test", "gw-1", "ward-1", "co2-1"
SITE_MQTT_NAME = "mqtt.site.urbanpulse.test"  # gateway_site_mqtt_host: the site broker's name
SITE_PORT = CLOUD_PORT = 8883  # the roles' defaults
GATEWAY = "urbanpulse-gateway"
SERVICES = ("mosquitto", GATEWAY)
STATE_DIR = "/var/lib/urbanpulse-gateway"


@dataclass
class Site:
    node: BootedNode
    cloud: TestCloud
    playbook: list[str]
    env: dict[str, str]
    first_run: subprocess.CompletedProcess[str]
    ca: Path
    node_password: str
    work: Path

    def node_creds(self, password: str | None = None) -> MqttCredentials:
        """The site's node NODE on the site broker, at the gateway host's address."""
        path = self.work / f"node-{secrets.token_hex(4)}.password"
        path.write_text((password or self.node_password) + "\n")
        path.chmod(0o600)
        return MqttCredentials(host=self.node.addr, port=SITE_PORT, ca_file=self.ca,
                               username=f"{SITE}.{NODE}", password_file=path)


def _inventory(path: Path, node: BootedNode, ca: Path, site_cert: tuple[Path, Path], wheel: Path,
               secret: dict[str, str]) -> Path:
    gateway = {
        **ssh_host_vars(node),
        "edge_site": SITE,
        "edge_node_id": GW,
        "gateway_site_mqtt_host": SITE_MQTT_NAME,
        "gateway_site_server_cert_src": str(site_cert[0]),
        "gateway_site_server_key_src": str(site_cert[1]),
        "vault_edge_mqtt_password": secret["cloud"],
        "vault_gateway_site_mqtt_password": secret["site"],
    }
    inventory = {"all": {
        "vars": {"urbanpulse_mqtt_host": MQTT_NAME, "urbanpulse_mqtt_port": CLOUD_PORT,
                 "urbanpulse_ca_cert_src": str(ca), "urbanpulse_wheel_src": str(wheel)},
        "children": {
            # The site's node, which the site broker must know; the play never connects to it.
            "edge": {"children": {"site_test": {"vars": {"edge_site": SITE}, "hosts": {
                "ward-node": {"edge_node_id": NODE, "vault_edge_mqtt_password": secret["node"]}}}}},
            "gateway": {"hosts": {HOST: gateway}},
        },
    }}
    path.write_text(json.dumps(inventory, indent=2))  # JSON is YAML
    path.chmod(0o600)
    return path


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    missing = missing_requirements()
    assert not missing, f"{OPT_IN}=1 but this machine lacks {missing} (see the module docstring)"
    cache = cache_dir()
    rootfs = cached_gateway_rootfs(cache)
    wheels = cached_wheels(cache, extra_requirements("edge"))
    work = tmp_path_factory.mktemp("booted-gateway")
    wheel = _build_wheel(work / "wheel", "gateway")
    # The cloud broker's CA signs the site broker's certificate too: the role gives the
    # gateway one CA (urbanpulse_ca_cert_src) for both links, as a deployment has one.
    cloud_home = work / "cloud"
    layout = Layout(cloud_home)
    _seed_tls(layout)
    broker = CloudBroker(cloud_home, SITE, GW)
    broker.start()
    cloud = TestCloud(broker)
    try:
        cloud.start(f"booted-cloud-{os.getpid()}")
        secret = {"cloud": layout.mqtt_password(broker.gateway_user).read_text().strip(),
                  "site": secrets.token_urlsafe(24), "node": secrets.token_urlsafe(24)}
        with node_network() as net:
            tls = work / "site-tls"
            tls.mkdir(mode=0o700)
            site_cert = Ca.load(layout.ca_cert, layout.ca_key).issue(
                tls, "site-mqtt", SITE_MQTT_NAME, server=True, hosts=(SITE_MQTT_NAME, net.node_addr))
            # The gateway reaches its own broker by the name its certificate carries
            # (ansible/README.md), and the cloud's on this machine.
            files = node_files(HOST, f"127.0.0.1\tlocalhost {SITE_MQTT_NAME}\n127.0.1.1\t{HOST}\n"
                                     f"{net.host_addr}\t{MQTT_NAME}\n", wheels)
            relay = TcpRelay(net.host_addr, CLOUD_PORT, broker.port)
            relay.start()
            try:
                with booted_node(rootfs, work / "node", files, net) as node:
                    fresh_apt_lists(node)
                    env = ansible_env(work)
                    inventory = _inventory(work / "inventory.yml", node, layout.ca_cert, site_cert,
                                           wheel, secret)
                    argv = [_ansible_tool("ansible-playbook"), "-i", str(inventory), "gateway.yml"]
                    yield Site(node, cloud, argv, env, play(argv, env), layout.ca_cert,
                               secret["node"], work)
            finally:
                relay.stop()
    finally:
        cloud.stop()
        broker.stop()


def test_the_play_starts_the_site_broker_and_the_gateway_under_systemd(site: Site) -> None:
    node = site.node
    for service in SERVICES:
        unit = running_unit(node, service)
        assert unit["NRestarts"] == "0", f"{service} is being restarted by systemd"
    log = _gateway_log(node)
    # Started once: not started, then restarted by the handler a moment later.
    assert len([line for line in log.splitlines() if line.startswith("Started ")]) == 1, log
    # Its broker had the role's config when it started: it connected at its first attempt
    # (ansible/README.md's "Verify" step: no "cannot connect to the broker" in its journal).
    assert "cannot connect" not in log, log
    assert "refused the connection" not in log, log
    gateway = running_unit(node, GATEWAY)
    assert gateway["User"] == "urbanpulse"
    assert_hardened(node, gateway["MainPID"], "urbanpulse", STATE_DIR, "gateway")
    # Debian's unit starts mosquitto as root; it drops to its own user.
    broker = status_fields(node.run(f"sudo cat /proc/{running_unit(node, 'mosquitto')['MainPID']}/status"))
    assert broker["Uid"].split() == [node.run("id -u mosquitto").strip()] * 4, broker["Uid"]


SECRETS = {  # path -> its mode, owner and group as the roles make them
    "/etc/urbanpulse/site-mqtt.password": "640 root urbanpulse",
    "/etc/urbanpulse/mqtt.password": "640 root urbanpulse",
    "/etc/mosquitto/urbanpulse/server.key": "640 root mosquitto",
    "/etc/mosquitto/urbanpulse/passwd-nodes": "640 root mosquitto",
    "/etc/mosquitto/urbanpulse/passwd.sha256": "600 root root",
}


def test_the_secrets_are_readable_by_their_service_only(site: Site) -> None:
    node = site.node
    modes = dict(line.split(" ", 1) for line in
                 node.run(f"sudo stat -c '%n %a %U %G' {' '.join(SECRETS)}").splitlines())
    assert modes == SECRETS
    for path in SECRETS:  # the SSH user, any user but root and the service's group
        denied = subprocess.run(site.node.ssh_argv(f"cat {path}"), capture_output=True, text=True,
                                timeout=30, check=False)
        assert denied.returncode != 0, (path, denied)
        assert "Permission denied" in denied.stderr, (path, denied)
    passwd = node.run("sudo cat /etc/mosquitto/urbanpulse/passwd-nodes")
    assert sorted(line.split(":", 1)[0] for line in passwd.splitlines()) == [
        f"{SITE}.{GW}", f"{SITE}.{NODE}"]
    assert site.node_password not in passwd  # hashed on the controller
    password = node.run("sudo -u urbanpulse cat /etc/urbanpulse/mqtt.password")
    assert password.strip() == site.cloud.broker.layout.mqtt_password(
        site.cloud.broker.gateway_user).read_text().strip()


def _connects(creds: MqttCredentials) -> str:
    """'accepted' or the broker's refusal."""
    client = make_client("probe", creds, clean_start=True)
    try:
        connect_and_wait(client)
    except MqttConnectError as exc:
        return str(exc)
    close_client(client)
    return "accepted"


def test_the_site_broker_listens_on_its_port_for_the_sites_nodes(site: Site) -> None:
    listening = {tuple(line.split()[3].rsplit(":", 1)) for line in
                 site.node.run("ss -Hltn").splitlines()}
    ports = {port for _, port in listening}
    assert ports == {"22", str(SITE_PORT)}, listening  # not Debian's 1883, nothing of the gateway
    # gateway_site_mqtt_bind "" (the role's default): every address, the site's network's too.
    assert {addr for addr, port in listening if port == str(SITE_PORT)} <= {"0.0.0.0", "[::]", "*"}
    assert _connects(site.node_creds()) == "accepted"
    refused = _connects(site.node_creds("wrong-" + secrets.token_urlsafe(18)))
    assert "refused the connection: Not authorized" in refused, refused


def _reading(seq: int, co2: float) -> Reading:
    ts_ns = int(datetime.now(UTC).timestamp() * 1e6) * 1000
    return Reading(sensor=SENSOR, kind="air.co2", ts_ns=ts_ns, seq=seq, values={"co2": co2})


def _relayed_and_acked(site: Site, reading: Reading) -> None:
    """A batch of `reading` published on the site broker as NODE, as a node agent does (its
    own ack topic subscribed first): it must reach the cloud in a relay of the gateway, and
    the cloud's ack of that relay come back to the node as an ack of its batch."""
    batch = f"{secrets.token_hex(8)}.{reading.seq}"
    acks: list[str] = []
    acked, subscribed = threading.Event(), threading.Event()

    def on_message(client: Any, userdata: Any, msg: Any) -> None:
        acks.extend(decode_ack(msg.payload))
        if batch in acks:
            acked.set()

    client = make_client("any-id", site.node_creds(), clean_start=True)
    client.on_message = on_message
    client.on_subscribe = lambda *a: subscribed.set()
    connect_and_wait(client)
    try:
        client.subscribe(ack_topic(SITE, NODE), qos=1)
        assert subscribed.wait(10), "ack subscription not acknowledged"
        sent = client.publish(data_topic(SITE, NODE), encode_batch(SITE, NODE, [reading], batch), qos=1)
        sent.wait_for_publish(10)
        assert sent.is_published(), "the site broker did not take the batch"
        cloud = site.cloud
        # TestCloud subscribes the gateway's relay topic only: what it decodes came in a relay.
        wait_for(lambda: reading.seq in cloud.seqs(NODE, SENSOR), 60,
                 f"reading {reading.seq} of {NODE} in a relay at the cloud", every_s=0.2)
        assert acked.wait(60), f"no ack of {batch} on the site broker; acks: {acks}"
    finally:
        close_client(client)


def test_a_node_batch_is_relayed_to_the_cloud_and_its_ack_comes_back(site: Site) -> None:
    _relayed_and_acked(site, _reading(1, 615.0))
    assert any(s.get("state") == "online" for s in list(site.cloud.gateway_statuses))


def test_a_second_run_changes_nothing_and_restarts_nothing(site: Site) -> None:
    node = site.node
    before = {service: running_unit(node, service)["MainPID"] for service in SERVICES}
    assert_no_change(play(site.playbook, site.env), HOST)
    dry = play([*site.playbook, "--check"], site.env)  # the README's dry run
    assert_no_change(dry, HOST)
    after = {service: running_unit(node, service)["MainPID"] for service in SERVICES}
    assert after == before, "a second run restarted a service"


def _gateway_log(node: BootedNode, since_boot: bool = False) -> str:
    return node.run(f"sudo journalctl -u {GATEWAY} -o cat --no-pager{' -b' if since_boot else ''}")


def test_after_a_reboot_both_start_by_themselves_and_messages_flow(site: Site) -> None:
    node = site.node
    status = node.reboot()
    assert status == 133, f"systemd-nspawn exited {status}, not as for a reboot (133)"
    for service in SERVICES:
        running_unit(node, service)
    _relayed_and_acked(site, _reading(2, 630.0))
    # After=mosquitto.service: its broker was up when it started.
    assert "cannot connect" not in _gateway_log(node, since_boot=True)
