"""The influxdb role's users, run by ansible-playbook itself on this machine (connection
local; only tasks/users.yml, the rest installs packages) against a real influxd serving HTTPS
with auth on 127.0.0.1. Its certificate names influx.urbanpulse.test only, as a deployed one
names the host's network name: the role's requests go to 127.0.0.1 and check it for that name.

Each managed user ends with exactly the grants the inventory gives (cluster admin and other
databases revoked), a user that leaves the inventory is dropped, the admin and users the role
never managed are left alone, and a certificate the CA did not sign or that names another
host stops the role before it changes anything."""

from __future__ import annotations

import base64
import http.client
import json
import os
import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from bench.influx.server import with_settings
from tests.ansible.helpers import ROLES
from tests.ansible.test_ansible_playbooks import _ansible_tool
from urbanpulse.stack import influxd, process
from urbanpulse.stack.config import StackConfig
from urbanpulse.stack.layout import Layout
from urbanpulse.testing import wait_for

SERVER_NAME = "influx.urbanpulse.test"
ADMIN = ("admin", "admin-secret-0123456789")
WRITER = {"name": "writer", "password": "writer-secret-0123456789",
          "grants": [{"database": "urbanpulse", "privilege": "WRITE"}]}
READER = {"name": "reader", "password": "reader-secret-0123456789",
          "grants": [{"database": "urbanpulse", "privilege": "READ"}]}
EXPORTER = {"name": "exporter", "password": "exporter-secret-012345",
            "grants": [{"database": "urbanpulse", "privilege": "READ"}]}
HAND_MADE = "telegraf"  # made by hand on the server: not the role's
READY_S = 30.0


def _issue(out: Path, ca_name: str, server_name: str) -> tuple[Path, Path, Path]:
    """A CA and a server certificate it signed for `server_name` (a DNS name, no address)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.now(UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ca_name)])
    ca = (x509.CertificateBuilder().subject_name(ca_subject).issuer_name(ca_subject)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .sign(ca_key, hashes.SHA256()))
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, server_name)]))
            .issuer_name(ca_subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(server_name)]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    out.mkdir(parents=True, exist_ok=True)
    paths = out / "ca.pem", out / "server.pem", out / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    paths[2].chmod(0o600)
    return paths


@dataclass
class Server:
    port: int
    ca_file: Path
    home: Path

    def request(self, path: str, form: dict[str, str] | None = None,
                auth: tuple[str, str] | None = None) -> tuple[int, bytes]:
        """To 127.0.0.1, the certificate checked for SERVER_NAME (the test's own client)."""
        context = ssl.create_default_context(cafile=str(self.ca_file))
        raw = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        conn = http.client.HTTPConnection(SERVER_NAME, self.port, timeout=10)
        conn.sock = context.wrap_socket(raw, server_hostname=SERVER_NAME)
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        if auth is not None:
            headers["Authorization"] = "Basic " + base64.b64encode(":".join(auth).encode()).decode()
        try:
            conn.request("GET" if form is None else "POST", path,
                         None if form is None else urlencode(form), headers)
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    def admin(self, statement: str) -> list[list[Any]]:
        status, body = self.request("/query", {"q": statement}, ADMIN)
        result = json.loads(body)["results"][0]
        assert (status, result.get("error")) == (200, None), statement
        return [row for s in result.get("series", []) for row in s["values"]]

    def users(self) -> dict[str, bool]:
        return {name: is_admin for name, is_admin in self.admin("SHOW USERS")}

    def grants(self, user: str) -> dict[str, str]:
        return {db: p for db, p in self.admin(f'SHOW GRANTS FOR "{user}"') if p != "NO PRIVILEGES"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with _serve(tmp_path_factory.mktemp("influx-role")) as found:
        yield found


@contextmanager
def _serve(home: Path) -> Iterator[Server]:
    """A fresh influxd serving HTTPS with auth on and no user, on 127.0.0.1."""
    influxd.require_binary()
    ca, cert, key = _issue(home / "tls", "urbanpulse test CA", SERVER_NAME)
    http_port, rpc_port, unused_mqtt = process.free_ports(3)
    config = StackConfig(home=home, mqtt_port=unused_mqtt, influx_port=http_port, influx_rpc_port=rpc_port)
    layout = Layout(home)
    influxd.write_config(config, layout)  # auth on, as the role's influxdb.conf
    layout.influx_conf.write_text(with_settings(layout.influx_conf.read_text(), {"http": {
        "https-enabled": "true", "https-certificate": f'"{cert}"', "https-private-key": f'"{key}"'}}))
    process.start_detached([influxd.BINARY, "run", "-config", str(layout.influx_conf)],
                           output=layout.influx_log, pidfile=layout.influx_pid, env=influxd.ENVIRONMENT)
    found = Server(http_port, ca, home)

    def answers() -> bool:
        try:
            return found.request("/ping")[0] == 204
        except ConnectionRefusedError:
            return False
    try:
        try:
            wait_for(answers, READY_S, "influxd to answer over https", every_s=0.05)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{process.tail(layout.influx_log)}") from exc
        yield found
    finally:
        influxd.stop(layout)


@dataclass
class Run:
    failed: bool
    changed: bool
    msg: str
    statements: list[str]


def run_role(server: Server, tmp_path: Path, *, users: list[dict[str, Any]] | None = None,
             check: bool = False, **extra: Any) -> Run:
    """tasks/users.yml of the role for one local host, with the role's defaults under it."""
    host_vars: dict[str, Any] = {
        "ansible_connection": "local", "ansible_python_interpreter": sys.executable,
        # the port of the url is not the one the role uses: only its host name counts
        "urbanpulse_influx_url": f"https://{SERVER_NAME}:8086",
        "influxdb_http_port": server.port, "influxdb_ca_file": str(server.ca_file),
        "influxdb_managed_users_record": str(server.home / "managed-users.json"),
        "vault_influx_admin_password": ADMIN[1],
        "vault_influx_writer_password": WRITER["password"],
        "vault_influx_reader_password": READER["password"],
        **({} if users is None else {"influxdb_users": users}), **extra}
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "inventory.json").write_text(json.dumps({"all": {"hosts": {"influx-test": host_vars}}}))
    result_file = tmp_path / "result.json"
    (tmp_path / "users.yml").write_text(json.dumps([{
        "name": "The influxdb role's users", "hosts": "all", "gather_facts": False,
        "tasks": [{"block": [{"ansible.builtin.include_role": {"name": "influxdb", "tasks_from": "users"}}],
                   "always": [{"ansible.builtin.copy": {
                       "content": "{{ influxdb_users_result | to_json }}", "dest": str(result_file)},
                       "check_mode": False}]}]}]))
    out = subprocess.run(
        [_ansible_tool("ansible-playbook"), "-i", str(tmp_path / "inventory.json"),
         str(tmp_path / "users.yml"), *(["--check"] if check else [])],
        cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, "ANSIBLE_CONFIG": "", "ANSIBLE_ROLES_PATH": str(ROLES), "ANSIBLE_NOCOLOR": "1",
             "ANSIBLE_LOCAL_TEMP": str(tmp_path / "ansible-tmp"),
             "ANSIBLE_HOME": str(tmp_path / "ansible-home"), "ANSIBLE_RETRY_FILES_ENABLED": "0"})
    try:
        result = json.loads(result_file.read_text())
    except (OSError, ValueError) as exc:
        raise AssertionError(f"ansible-playbook said:\n{out.stdout}\n{out.stderr}") from exc
    assert (out.returncode != 0) == bool(result.get("failed")), out.stdout
    return Run(bool(result.get("failed")), bool(result.get("changed")), str(result.get("msg", "")),
               list(result.get("statements", [])))


@pytest.fixture(scope="module")
def first_run(server: Server, tmp_path_factory: pytest.TempPathFactory) -> Run:
    return run_role(server, tmp_path_factory.mktemp("first-run"))


def _writes(server: Server, user: dict[str, Any]) -> int:
    return server.request("/write?db=urbanpulse", {}, (user["name"], user["password"]))[0]


def test_a_fresh_influxdb_gets_the_admin_the_database_and_exactly_the_grants(
        server: Server, first_run: Run, tmp_path: Path) -> None:
    assert not first_run.failed, first_run.msg
    assert first_run.changed
    assert server.users() == {"admin": True, "writer": False, "reader": False}
    assert ["urbanpulse"] in server.admin("SHOW DATABASES")
    assert (server.grants("writer"), server.grants("reader")) == (
        {"urbanpulse": "WRITE"}, {"urbanpulse": "READ"})
    assert json.loads((server.home / "managed-users.json").read_text()) == ["reader", "writer"]
    assert not any("secret" in s for s in first_run.statements)
    # the passwords are the inventory's: the writer may write, the reader may not
    assert _writes(server, WRITER) == 204  # an empty body: accepted, nothing written
    assert _writes(server, READER) == 403
    again = run_role(server, tmp_path)
    assert (again.failed, again.changed, again.statements) == (False, False, [])


def test_grants_the_inventory_does_not_give_are_revoked(server: Server, first_run: Run,
                                                        tmp_path: Path) -> None:
    server.admin('CREATE DATABASE "other"')
    server.admin(f"CREATE USER {HAND_MADE} WITH PASSWORD 'hand-made-0123456789'")
    for statement in ("GRANT ALL PRIVILEGES TO reader", 'GRANT WRITE ON "urbanpulse" TO reader',
                      'GRANT ALL ON "other" TO writer', 'GRANT ALL ON "urbanpulse" TO writer',
                      f"GRANT ALL PRIVILEGES TO {HAND_MADE}", f'GRANT WRITE ON "other" TO {HAND_MADE}'):
        server.admin(statement)

    checked = run_role(server, tmp_path / "check", check=True)
    assert (checked.failed, checked.changed) == (False, True), checked.msg
    assert server.users()["reader"] is True  # --check changed nothing
    assert sorted(checked.statements) == sorted([
        'REVOKE ALL PRIVILEGES FROM "reader"', 'GRANT READ ON "urbanpulse" TO "reader"',
        'REVOKE ALL ON "other" FROM "writer"', 'GRANT WRITE ON "urbanpulse" TO "writer"'])

    run = run_role(server, tmp_path)
    assert (run.failed, run.changed, sorted(run.statements)) == (False, True, sorted(checked.statements))
    assert server.users() == {"admin": True, "writer": False, "reader": False, HAND_MADE: True}
    assert (server.grants("writer"), server.grants("reader")) == (
        {"urbanpulse": "WRITE"}, {"urbanpulse": "READ"})
    assert server.grants(HAND_MADE) == {"other": "WRITE"}  # not the role's: left alone


def test_a_user_that_leaves_the_inventory_is_dropped(server: Server, first_run: Run,
                                                     tmp_path: Path) -> None:
    server.admin(f"CREATE USER {HAND_MADE}2 WITH PASSWORD 'hand-made-0123456789'")
    added = run_role(server, tmp_path / "added", users=[WRITER, READER, EXPORTER])
    assert not added.failed, added.msg
    assert server.grants("exporter") == {"urbanpulse": "READ"}
    assert json.loads((server.home / "managed-users.json").read_text()) == ["exporter", "reader", "writer"]

    removed = run_role(server, tmp_path / "removed", users=[WRITER])
    assert (removed.failed, removed.statements) == (False, ['DROP USER "exporter"', 'DROP USER "reader"'])
    users = server.users()
    assert {"exporter", "reader"}.isdisjoint(users)
    assert (users["admin"], f"{HAND_MADE}2" in users) == (True, True)
    assert json.loads((server.home / "managed-users.json").read_text()) == ["writer"]

    back = run_role(server, tmp_path / "back")  # the defaults: writer and reader
    assert not back.failed, back.msg
    assert server.grants("reader") == {"urbanpulse": "READ"}


def test_the_admin_is_never_a_managed_user(server: Server, first_run: Run, tmp_path: Path) -> None:
    run = run_role(server, tmp_path, users=[WRITER, {**READER, "name": "admin"}])
    assert run.failed
    assert "user admin is the admin" in run.msg
    assert server.users()["admin"] is True


@pytest.mark.parametrize(("case", "expected"), [
    ("another CA", "unable to get local issuer certificate"),
    ("another name", "Hostname mismatch, certificate is not valid for 'influx.other.test'"),
])
def test_a_certificate_that_does_not_check_out_stops_the_role_before_any_change(
        server: Server, first_run: Run, tmp_path: Path, case: str, expected: str) -> None:
    if case == "another CA":
        other_ca, _, _ = _issue(tmp_path / "other", "another CA", SERVER_NAME)
        extra: dict[str, Any] = {"influxdb_ca_file": str(other_ca)}
    else:
        extra = {"urbanpulse_influx_url": "https://influx.other.test:8086"}
    never = {**EXPORTER, "name": "never-made"}
    run = run_role(server, tmp_path, users=[WRITER, READER, never], **extra)
    assert run.failed
    assert "the server's certificate is refused" in run.msg
    assert expected in run.msg
    assert "never-made" not in server.users()


def test_a_grant_on_a_database_whose_name_needs_escaping_is_revoked(
        server: Server, first_run: Run, tmp_path: Path) -> None:
    """The databases in SHOW GRANTS are the server's, not the inventory's: a name with a
    double quote (InfluxDB allows it; a backslash it refuses) is escaped in the REVOKE, not
    pasted between quotes (which failed the role, or with a crafted name made another
    statement)."""
    odd = 'odd"name; x'
    server.admin('CREATE DATABASE "odd\\"name; x"')
    server.admin('GRANT READ ON "odd\\"name; x" TO writer')
    assert server.grants("writer") == {"urbanpulse": "WRITE", odd: "READ"}
    try:
        run = run_role(server, tmp_path)
        assert not run.failed, run.msg
        assert run.statements == ['REVOKE ALL ON "odd\\"name; x" FROM "writer"']
        assert server.grants("writer") == {"urbanpulse": "WRITE"}
    finally:
        server.admin('DROP DATABASE "odd\\"name; x"')


def test_database_names_from_the_inventory_are_checked(server: Server, first_run: Run,
                                                       tmp_path: Path) -> None:
    bad = {**READER, "grants": [{"database": 'urbanpulse" TO "x', "privilege": "READ"}]}
    run = run_role(server, tmp_path / "grant", users=[WRITER, bad])
    assert run.failed
    assert "database name" in run.msg
    run = run_role(server, tmp_path / "db", influxdb_database="a b")
    assert run.failed
    assert "database name 'a b'" in run.msg


def test_a_server_that_does_not_answer_http_is_a_clear_error(tmp_path: Path) -> None:
    """The role's module against a TLS server with a right certificate that answers no HTTP
    (another service on InfluxDB's port): a SetupError naming the server, not a traceback."""
    import importlib.util
    import threading

    ca, cert, key = _issue(tmp_path, "urbanpulse test CA", "influx.urbanpulse.test")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve_once() -> None:
        conn, _ = listener.accept()
        with context.wrap_socket(conn, server_side=True) as tls:
            tls.recv(4096)
            tls.sendall(b"SSH-2.0-OpenSSH_9.2\r\n")

    thread = threading.Thread(target=serve_once, daemon=True)
    thread.start()
    path = ROLES / "influxdb" / "library" / "urbanpulse_influxdb_users.py"
    spec = importlib.util.spec_from_file_location("urbanpulse_influxdb_users_module", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[spec.name]
    influx = module.VerifiedInflux("127.0.0.1", port, "influx.urbanpulse.test", str(ca), 5.0)
    try:
        with pytest.raises(module.SetupError, match=r"influx\.urbanpulse\.test:\d+ .*/ping: not "
                                                    r"an HTTP answer .*InfluxDB's port"):
            influx.wait_for_ping(1.0)
    finally:
        thread.join(5)
        listener.close()


def run_stage(tmp_path: Path, port: int, ca_file: Path, stage: str,
              admin_password: str = ADMIN[1]) -> dict[str, Any]:
    """The role's module alone, one stage of the first install as tasks/main.yml runs it
    (requests to 127.0.0.1), in ansible-playbook on this machine: its result."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    result_file = tmp_path / "result.json"
    (tmp_path / "stage.yml").write_text(json.dumps([{
        "hosts": "all", "gather_facts": False,
        "tasks": [{"block": [{"urbanpulse_influxdb_users": {
            "address": "127.0.0.1", "port": port, "server_name": SERVER_NAME,
            "ca_file": str(ca_file), "admin_user": ADMIN[0], "admin_password": admin_password,
            "database": "urbanpulse", "users": [], "record": str(tmp_path / "managed-users.json"),
            "stage": stage}, "register": "stage_result"}],
            "always": [{"ansible.builtin.copy": {"content": "{{ stage_result | to_json }}",
                                                 "dest": str(result_file)}}]}]}]))
    out = subprocess.run(
        [_ansible_tool("ansible-playbook"), "-i", "localhost,", "-c", "local",
         "-e", f"ansible_python_interpreter={sys.executable}", str(tmp_path / "stage.yml")],
        cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, "ANSIBLE_CONFIG": "", "ANSIBLE_NOCOLOR": "1",
             "ANSIBLE_LIBRARY": str(ROLES / "influxdb" / "library"),
             "ANSIBLE_LOCAL_TEMP": str(tmp_path / "ansible-tmp"),
             "ANSIBLE_HOME": str(tmp_path / "ansible-home"), "ANSIBLE_RETRY_FILES_ENABLED": "0"})
    try:
        result: dict[str, Any] = json.loads(result_file.read_text())
    except (OSError, ValueError) as exc:
        raise AssertionError(f"ansible-playbook said:\n{out.stdout}\n{out.stderr}") from exc
    assert (out.returncode != 0) == bool(result.get("failed")), out.stdout
    return result


def test_the_first_install_makes_the_admin_alone_and_knows_it_next_time(tmp_path: Path) -> None:
    """tasks/main.yml keeps the API on the loopback while `probe` says there is no admin, has
    `admin` create it there, and only then binds it as configured; the next run's probe says
    the admin exists, so that run writes the configured address at once and changes nothing."""
    _, _, unused = process.free_ports(3)
    ca, _, _ = _issue(tmp_path / "no-server", "urbanpulse test CA", SERVER_NAME)
    # nothing listening yet (the package not installed): no admin, and no failure
    none = run_stage(tmp_path / "none", unused, ca, "probe")
    assert (none["failed"], none["changed"], none["admin_exists"]) == (False, False, False)
    with _serve(tmp_path / "influx") as fresh:
        before = run_stage(tmp_path / "probe-1", fresh.port, fresh.ca_file, "probe")
        assert (before["failed"], before["admin_exists"]) == (False, False)
        made = run_stage(tmp_path / "admin-1", fresh.port, fresh.ca_file, "admin")
        assert (made["failed"], made["changed"]) == (False, True), made
        assert fresh.users() == {"admin": True}  # the admin only: users come after the rebind
        after = run_stage(tmp_path / "probe-2", fresh.port, fresh.ca_file, "probe")
        assert (after["failed"], after["admin_exists"]) == (False, True)
        again = run_stage(tmp_path / "admin-2", fresh.port, fresh.ca_file, "admin")
        assert (again["failed"], again["changed"]) == (False, False), again


def test_an_admin_someone_else_made_stops_the_role(tmp_path: Path) -> None:
    """Made before the role's (the window the loopback closes): its password is not the
    vault's, and the role says so rather than carrying on with a server it does not own."""
    with _serve(tmp_path / "influx") as fresh:
        planted = fresh.request("/query", {"q": "CREATE USER intruder WITH PASSWORD "
                                                "'intruder-0123456789' WITH ALL PRIVILEGES"})
        assert planted[0] == 200
        assert run_stage(tmp_path / "probe", fresh.port, fresh.ca_file, "probe")["admin_exists"]
        refused = run_stage(tmp_path / "admin", fresh.port, fresh.ca_file, "admin")
        assert refused["failed"] is True
        assert "the admin's password is refused (401)" in refused["msg"]
