"""Ansible module of the influxdb role: the admin, the database and the users the role manages,
each left with exactly the privileges it is given, on this host's InfluxDB 1.x.

Its requests go to `address` (this host's loopback) but check the server's certificate
against `ca_file` for `server_name`, the name the certificate carries: Ansible's uri module
can only check the name it connects to, and the certificate names the host's network name,
not 127.0.0.1.

Converging: a managed user that is a cluster admin loses that, privileges on databases it is
not given are revoked, and the given ones set (GRANT replaces a database's privilege in 1.x).
Users this module managed before (their names kept in `record`) that are no longer given are
dropped; the admin and users it never managed are never touched. Statements that change
something are returned in `statements`, passwords left out.

`stage` splits the first install (tasks/main.yml), which keeps the HTTP API on the loopback
until the admin exists: InfluxDB with auth on and no user takes one unauthenticated "create
admin" from whoever sends it first. `probe` only asks, without waiting, whether the server
already has users (`admin_exists`: it answers 401 to an unauthenticated query; anything else,
no server included, is taken as no); `admin` creates the admin if there is none and checks
that its password is taken; `all` (the default) does that and everything above.
"""

from __future__ import annotations

import base64
import http.client
import json
import re
import socket
import ssl
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from ansible.module_utils.basic import AnsibleModule  # type: ignore[import-untyped]

NAME = re.compile(r"[A-Za-z0-9_-]+\Z")
PASSWORD = re.compile(r"[A-Za-z0-9_-]{16,}\Z")
PRIVILEGES = {"READ": "READ", "WRITE": "WRITE", "ALL": "ALL PRIVILEGES"}
NO_PRIVILEGES = "NO PRIVILEGES"
PING_EVERY_S = 0.5

ARGUMENTS: dict[str, Any] = {
    "address": {"type": "str", "default": "127.0.0.1"},
    "port": {"type": "int", "required": True},
    "server_name": {"type": "str", "required": True},
    "ca_file": {"type": "path", "required": True},
    "admin_user": {"type": "str", "required": True},
    "admin_password": {"type": "str", "required": True, "no_log": True},
    "database": {"type": "str", "required": True},
    "users": {"type": "list", "elements": "dict", "required": True, "options": {
        "name": {"type": "str", "required": True},
        "password": {"type": "str", "required": True, "no_log": True},
        "grants": {"type": "list", "elements": "dict", "default": [], "options": {
            "database": {"type": "str", "required": True},
            "privilege": {"type": "str", "required": True, "choices": sorted(PRIVILEGES)},
        }},
    }},
    "record": {"type": "path", "required": True},
    "stage": {"type": "str", "default": "all", "choices": ["probe", "admin", "all"]},
    "wait_s": {"type": "float", "default": 30.0},
    "timeout_s": {"type": "float", "default": 10.0},
}


class SetupError(Exception):
    """A request failed or InfluxDB refused a statement: the module fails with this text."""


@dataclass(frozen=True)
class User:
    name: str
    password: str
    grants: dict[str, str]  # database -> READ, WRITE or ALL PRIVILEGES


class VerifiedInflux:
    """HTTPS to `address`:`port`, the certificate checked against `ca_file` for `server_name`."""

    def __init__(self, address: str, port: int, server_name: str, ca_file: str,
                 timeout_s: float) -> None:
        try:
            self._context = ssl.create_default_context(cafile=ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise SetupError(f"ca_file {ca_file}: cannot be used ({exc})") from exc
        self._address = address
        self._port = port
        self._server_name = server_name
        self._timeout_s = timeout_s
        self.where = f"https://{server_name}:{port} (at {address})"

    def request(self, path: str, form: Mapping[str, str] | None = None,
                auth: tuple[str, str] | None = None) -> tuple[int, bytes]:
        raw = socket.create_connection((self._address, self._port), self._timeout_s)
        try:
            sock = self._context.wrap_socket(raw, server_hostname=self._server_name)
        except ssl.SSLCertVerificationError as exc:
            raw.close()
            raise SetupError(f"{self.where}: the server's certificate is refused "
                             f"({exc.verify_message}); it must be signed by the CA of ca_file "
                             f"and name {self._server_name}") from exc
        except BaseException:
            raw.close()
            raise
        conn = http.client.HTTPConnection(self._server_name, self._port, timeout=self._timeout_s)
        conn.sock = sock
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        if auth is not None:
            headers["Authorization"] = "Basic " + base64.b64encode(":".join(auth).encode()).decode()
        try:
            conn.request("POST" if form is not None else "GET", path,
                         body=None if form is None else urlencode(form), headers=headers)
            response = conn.getresponse()
            return response.status, response.read()
        except http.client.HTTPException as exc:
            raise SetupError(f"{self.where}{path}: not an HTTP answer ({exc!r}); is this "
                             f"InfluxDB's port?") from exc
        finally:
            conn.close()

    def wait_for_ping(self, wait_s: float) -> None:
        """Until /ping answers 204; only a connection not accepted yet is waited for."""
        deadline = time.monotonic() + wait_s
        while True:
            try:
                status, body = self.request("/ping")
            except (TimeoutError, ConnectionRefusedError, ConnectionResetError) as exc:
                if time.monotonic() >= deadline:
                    raise SetupError(f"{self.where}: no answer within {wait_s} s ({exc})") from exc
                time.sleep(PING_EVERY_S)
                continue
            if status != 204:
                raise SetupError(f"{self.where}/ping answered {status}: {body[:200]!r}")
            return


class Admin:
    """InfluxQL statements as the admin; a statement InfluxDB refuses raises SetupError."""

    def __init__(self, influx: VerifiedInflux, user: str, password: str) -> None:
        self._influx = influx
        self._auth = (user, password)

    def query(self, statement: str) -> list[dict[str, Any]]:
        status, body = self._influx.request("/query", {"q": statement}, self._auth)
        if status == 401:
            raise SetupError(f"{self._influx.where}: the admin's password is refused (401)")
        try:
            answer = json.loads(body)
        except ValueError as exc:
            raise SetupError(f"{self._influx.where}: answered {status} {body[:200]!r}") from exc
        result = (answer.get("results") or [{}])[0]
        error = answer.get("error") or result.get("error")
        if status != 200 or error:
            shown = statement.split(" WITH PASSWORD ")[0].split(" = '")[0]
            raise SetupError(f"{shown}: {error or status}")
        series: list[dict[str, Any]] = result.get("series") or []
        return series

    def rows(self, statement: str) -> list[list[Any]]:
        return [row for s in self.query(statement) for row in s.get("values") or []]


def bootstrap_admin(influx: VerifiedInflux, user: str, password: str, check: bool) -> bool:
    """InfluxDB 1.x with auth on and no user accepts one unauthenticated statement: creating
    an admin. With an admin in place it answers 401 or 403. True if the admin was created."""
    if check:
        status, body = influx.request("/query", {"q": "SHOW USERS"})
        return status == 403 and b"create admin user first" in body
    status, body = influx.request("/query", {
        "q": f"CREATE USER {quote(user)} WITH PASSWORD '{password}' WITH ALL PRIVILEGES"})
    if status in (401, 403):
        return False
    if status != 200 or b'"error"' in body:
        raise SetupError(f"creating the admin {user}: answered {status}")
    return True


def admin_exists(influx: VerifiedInflux) -> bool:
    """Whether the server has users (auth on: 401 without credentials), asked once: a server
    that is not up, answers no HTTPS or has auth off is taken as one with no admin yet."""
    try:
        status, _ = influx.request("/query", {"q": "SHOW USERS"})
    except (OSError, SetupError):
        return False
    return status == 401


def ensure_admin(influx: VerifiedInflux, user: str, password: str, check: bool) -> bool:
    """The admin created on a server with none; its password checked (a 401 names an admin
    someone else made). True if it was created (in --check: would be)."""
    changed = bootstrap_admin(influx, user, password, check)
    if not (changed and check):
        Admin(influx, user, password).query("SHOW USERS")
    return changed


def quote(name: str) -> str:
    """An InfluxQL identifier in double quotes, escaped: names read back from the server
    (SHOW GRANTS) are not checked like the inventory's and may hold any character."""
    escaped = name.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def plan_user(user: User, exists: bool, is_admin: bool, current: Mapping[str, str]) -> list[str]:
    """The statements that leave `user` with exactly its grants (its password aside)."""
    out = [] if exists else [f"CREATE USER {quote(user.name)} WITH PASSWORD '{user.password}'"]
    if is_admin:
        out.append(f"REVOKE ALL PRIVILEGES FROM {quote(user.name)}")
    for db, privilege in sorted(current.items()):
        if db not in user.grants and privilege != NO_PRIVILEGES:
            out.append(f"REVOKE ALL ON {quote(db)} FROM {quote(user.name)}")
    for db, privilege in sorted(user.grants.items()):
        if current.get(db) != privilege:
            out.append(f"GRANT {privilege} ON {quote(db)} TO {quote(user.name)}")
    return out


def read_record(path: Path) -> set[str]:
    try:
        names = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return set()
    except (OSError, ValueError) as exc:
        raise SetupError(f"record {path}: cannot be read ({exc}); fix or delete it") from exc
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise SetupError(f"record {path}: not a list of user names; fix or delete it")
    return set(names)


def write_record(path: Path, names: Iterable[str]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(sorted(set(names))) + "\n", encoding="utf-8")
    tmp.chmod(0o644)
    tmp.replace(path)


def converge(influx: VerifiedInflux, params: Mapping[str, Any], users: list[User],
             check: bool) -> tuple[bool, list[str]]:
    admin_user: str = params["admin_user"]
    changed = bootstrap_admin(influx, admin_user, params["admin_password"], check)
    if changed and check:
        return True, ["CREATE USER (the admin) and everything after it"]
    admin = Admin(influx, admin_user, params["admin_password"])
    record = Path(params["record"])
    managed_before = read_record(record) - {admin_user}
    given = {u.name for u in users}
    existing = {str(name): bool(is_admin) for name, is_admin in admin.rows("SHOW USERS")}
    databases = {str(row[0]) for row in admin.rows("SHOW DATABASES")}

    todo: list[str] = []
    if params["database"] not in databases:
        todo.append(f"CREATE DATABASE {quote(params['database'])}")
    for user in users:
        current: dict[str, str] = {}
        if user.name in existing:
            current = {str(db): str(p) for db, p in admin.rows(f"SHOW GRANTS FOR {quote(user.name)}")}
        todo += plan_user(user, user.name in existing, existing.get(user.name, False), current)
    # Dropped rather than stripped: a user that keeps its password but no privilege can
    # still log in, and would be given rights again by anyone granting by mistake.
    todo += [f"DROP USER {quote(name)}" for name in sorted(managed_before - given) if name in existing]
    if not check:
        write_record(record, managed_before | given)  # before creating: a crash forgets no one
        for statement in todo:
            admin.query(statement)
        for user in users:  # not a change InfluxDB can report: not counted as one
            admin.query(f"SET PASSWORD FOR {quote(user.name)} = '{user.password}'")
        write_record(record, given)
    shown = [s.split(" WITH PASSWORD ")[0] for s in todo]
    return changed or bool(todo), shown


def check_database(name: str) -> str:
    if not NAME.match(name):
        raise SetupError(f"database name {name!r}: use letters, digits, '_' and '-'")
    return name


def parse_users(params: Mapping[str, Any]) -> list[User]:
    users: list[User] = []
    for raw in params["users"]:
        name, password = raw["name"], raw["password"]
        if not NAME.match(name):
            raise SetupError(f"user name {name!r}: use letters, digits, '_' and '-'")
        if name == params["admin_user"]:
            raise SetupError(f"user {name} is the admin: the admin is not one of the managed users")
        if not PASSWORD.match(password):
            raise SetupError(f"user {name}: the password must be 16+ of [A-Za-z0-9_-] (InfluxQL quotes it)")
        grants = {check_database(g["database"]): PRIVILEGES[g["privilege"]] for g in raw["grants"]}
        users.append(User(name, password, grants))
    check_database(params["database"])
    if len({u.name for u in users}) != len(users):
        raise SetupError("a user name is given twice")
    if not NAME.match(params["admin_user"]) or not PASSWORD.match(params["admin_password"]):
        raise SetupError("the admin's name or password has characters InfluxQL would need quoted")
    return users


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENTS, supports_check_mode=True)
    params = module.params
    try:
        users = parse_users(params)
        influx = VerifiedInflux(params["address"], params["port"], params["server_name"],
                                params["ca_file"], params["timeout_s"])
        if params["stage"] == "probe":
            module.exit_json(changed=False, admin_exists=admin_exists(influx))
        influx.wait_for_ping(params["wait_s"])
        if params["stage"] == "admin":
            created = ensure_admin(influx, params["admin_user"], params["admin_password"],
                                   module.check_mode)
            module.exit_json(changed=created, statements=["CREATE USER (the admin)"] if created else [])
        changed, statements = converge(influx, params, users, module.check_mode)
    except SetupError as exc:
        module.fail_json(msg=str(exc))
    except OSError as exc:
        module.fail_json(msg=f"InfluxDB at {params['address']}:{params['port']}: {exc}")
    module.exit_json(changed=changed, statements=statements)


if __name__ == "__main__":
    main()
