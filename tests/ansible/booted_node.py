"""A Debian 12 node with systemd as PID 1, for running the real playbooks against it
(test_ansible_edge_booted.py). Needs root, debootstrap, systemd-nspawn (Debian's
systemd-container), iproute2 and OpenSSH's client.

- The root file system is made once by debootstrap (minbase with systemd, Python, sudo and
  an SSH server; about a minute and 360 MB) and cached under URBANPULSE_ROOTFS_CACHE
  (default /var/cache/urbanpulse-tests), keyed by what goes into it. Each boot runs on an
  overlay of it, so the cache is never written by a test.
- The node has a network namespace of its own with one veth pair to this machine
  (NodeNetwork.host_addr here, .node_addr there) and no other route: it reaches nothing
  but this machine. Each node takes a /30 of NETWORK no interface here has yet, so nodes
  of two test processes (pytest-xdist's workers, two runs on one machine) boot at once.
- Ansible logs in over SSH as SSH_USER (passwordless sudo, as on a Raspberry Pi OS image).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import ipaddress
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import tomllib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.ansible.helpers import ANSIBLE, REPO
from urbanpulse.testing import wait_for

SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
# What the node has before the playbook runs: an image's systemd and SSH server, the
# python3 Ansible needs with python3-apt for its apt module (a standard Debian or Raspberry
# Pi OS install has it; Ansible would install it, from a mirror this node cannot reach),
# and the role's own apt packages (the same reason).
PACKAGES = ("systemd", "systemd-sysv", "dbus", "python3", "python3-apt", "python3-venv",
            "python3-pip", "sudo", "openssh-server", "iproute2")
SSH_USER = "tech"
CACHE_ENV = "URBANPULSE_ROOTFS_CACHE"
DEFAULT_CACHE = Path("/var/cache/urbanpulse-tests")
# Changing how the image is made: bump this, and the next run builds a new one.
IMAGE_RECIPE = 1

# The booted nodes' links: a /30 of it each, this machine's end the first address, the node's
# the second. Taken under NETWORK_LOCK, which all processes on this machine share.
NETWORK = ipaddress.IPv4Network("10.231.7.0/24")
PREFIX = 30
NETWORK_LOCK = Path("/run/lock/urbanpulse-booted-node-network.lock")
TOOLS = ("debootstrap", "systemd-nspawn", "ip", "ssh", "ssh-keygen", "mount", "umount", "chroot")
BOOT_TIMEOUT_S = 90.0


def missing_requirements() -> list[str]:
    """What this machine lacks for a booted node (empty if nothing)."""
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if os.geteuid() != 0:
        missing.append("root")
    return missing


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or DEFAULT_CACHE)


@contextlib.contextmanager
def _locked(lock_file: Path) -> Iterator[None]:
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_file, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _key(*parts: object) -> str:
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:12]


def _run(argv: Sequence[str], timeout_s: float) -> subprocess.CompletedProcess[str]:
    out = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout_s, check=False)
    if out.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} exited {out.returncode}:\n{out.stdout}{out.stderr}")
    return out


def cached_rootfs(cache: Path) -> Path:
    """The node's root file system, made by debootstrap on the first call (other images in
    the cache, of an older recipe, are removed then)."""
    return _cached_image(cache, "rootfs", PACKAGES, IMAGE_RECIPE)


def cached(cache: Path, name: str, prefix: str, build: Callable[[Path], None]) -> Path:
    """`cache/name`, made by `build(folder)` on the first call, under the cache's lock (the
    other entries named `prefix-*`, of an older recipe, are removed then). It exists only
    once complete: a build that fails or is killed leaves nothing under `name`."""
    final = cache / name
    with _locked(cache / ".lock"):
        if final.is_dir():
            return final
        for old in cache.glob(f"{prefix}-*"):
            shutil.rmtree(old)
        building = cache / f".building-{name}"
        shutil.rmtree(building, ignore_errors=True)
        build(building)
        building.rename(final)
        return final


def debootstrap(root: Path, suite: str, packages: Sequence[str]) -> None:
    """A minbase `suite` with `packages` at `root`, without the downloaded .deb files."""
    _run(["debootstrap", "--variant=minbase", f"--include={','.join(packages)}", suite,
          str(root), MIRROR], timeout_s=900)
    for deb in (root / "var" / "cache" / "apt" / "archives").glob("*.deb"):
        deb.unlink()


def _cached_image(cache: Path, prefix: str, packages: Sequence[str], recipe: int) -> Path:
    def build(root: Path) -> None:
        debootstrap(root, SUITE, packages)
        _run(["chroot", str(root), "useradd", "--create-home", "--shell", "/bin/bash",
              SSH_USER], timeout_s=60)
        sudoers = root / "etc" / "sudoers.d" / SSH_USER
        sudoers.write_text(f"{SSH_USER} ALL=(ALL) NOPASSWD: ALL\n")
        sudoers.chmod(0o440)

    return cached(cache, f"{prefix}-{SUITE}-{_key(SUITE, packages, SSH_USER, recipe)}", prefix, build)


def cached_wheels(cache: Path, requirements: Sequence[str]) -> Path:
    """A folder of wheels for `requirements` and their dependencies, downloaded from the
    package index once (the node installs from it: it reaches no index)."""
    return _cached_wheels(cache, "wheels", requirements)


def _cached_wheels(cache: Path, prefix: str, requirements: Sequence[str]) -> Path:
    def build(folder: Path) -> None:
        _run([sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:",
              "--dest", str(folder), *requirements], timeout_s=600)

    return cached(cache, f"{prefix}-{_key(sorted(requirements), sys.version_info[:2])}", prefix, build)


class BootedNode:
    """The booted container: `root` is its root file system as this machine sees it (the
    overlay), `key` SSH_USER's private key, `log` its console."""

    def __init__(self, root: Path, key: Path, log: Path, argv: Sequence[str], addr: str) -> None:
        self.root, self.key, self.log = root, key, log
        self.addr = addr  # the node's address, where SSH and its servers are reached
        self._argv = list(argv)
        self._proc: subprocess.Popen[bytes] | None = None

    def ssh_argv(self, command: str) -> list[str]:
        return ["ssh", "-i", str(self.key), *SSH_OPTIONS, f"{SSH_USER}@{self.addr}", command]

    def run(self, command: str, timeout_s: float = 60.0) -> str:
        """`command` run on the node by SSH_USER (through a shell there); its stdout.
        Fails the test if it exits non-zero."""
        return _run(self.ssh_argv(command), timeout_s=timeout_s).stdout

    def boot(self) -> None:
        """Start the container and return once systemd says the boot finished and
        SSH_USER can log in."""
        with open(self.log, "ab") as console:
            self._proc = subprocess.Popen(self._argv, stdout=console, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL, start_new_session=True)
        _wait_until_up(self, self._proc)

    def reboot(self) -> int:
        """`systemctl reboot` on the node, then boot it again (systemd-nspawn exits when
        its container reboots). Returns systemd-nspawn's exit status for that reboot."""
        assert self._proc is not None
        subprocess.run(self.ssh_argv("sudo systemctl reboot"), capture_output=True, timeout=60,
                       check=False)
        code = self._proc.wait(timeout=60)
        self.boot()
        return code

    def stop(self) -> None:
        """SIGTERM makes systemd-nspawn power the container off; SIGKILL if that hangs."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)


SSH_OPTIONS = ("-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
               "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
               "-o", "ConnectTimeout=3")


def _ip(*args: str) -> None:
    _run(["ip", *args], timeout_s=30)


def _drop_stale_networks() -> None:
    """A run killed before its cleanup leaves its namespace, and with it the pair and the
    address: the namespaces of runs whose process is gone are deleted."""
    for entry in _run(["ip", "netns", "list"], timeout_s=30).stdout.splitlines():
        name = entry.split(" ", 1)[0]
        if name.startswith("upn") and name[3:].isdigit() and not Path(f"/proc/{name[3:]}").exists():
            _ip("netns", "del", name)


@dataclass(frozen=True)
class NodeNetwork:
    """A network namespace (`netns`, its path) with one veth pair to this machine's
    namespace: `host_addr` on this machine's end, `node_addr` on the namespace's."""

    netns: Path
    host_addr: str
    node_addr: str


def _free_subnet() -> ipaddress.IPv4Network:
    """The first /30 of NETWORK that no address of an interface here falls in."""
    out = _run(["ip", "-o", "-4", "addr", "show"], timeout_s=30).stdout
    used = [ipaddress.IPv4Interface(line.split()[line.split().index("inet") + 1]).network
            for line in out.splitlines() if " inet " in line]
    for subnet in NETWORK.subnets(new_prefix=PREFIX):
        if not any(subnet.overlaps(net) for net in used):
            return subnet
    raise AssertionError(f"every /{PREFIX} of {NETWORK} is on an interface here (runs that did "
                         f"not clean up?); no address for a booted node:\n{out}")


@contextlib.contextmanager
def node_network() -> Iterator[NodeNetwork]:
    """A namespace of its own for a booted node, linked to this machine on a /30 of NETWORK
    that no other node has (the choice and the address are made under NETWORK_LOCK)."""
    tag = str(os.getpid())
    netns, host_if, node_if = f"upn{tag}", f"uph{tag}", f"upc{tag}"
    with _locked(NETWORK_LOCK):
        _drop_stale_networks()
        host_addr, node_addr = (str(a) for a in _free_subnet().hosts())
        _ip("netns", "add", netns)
        try:
            _ip("link", "add", host_if, "type", "veth", "peer", "name", node_if)
            _ip("link", "set", node_if, "netns", netns)
            _ip("addr", "add", f"{host_addr}/{PREFIX}", "dev", host_if)
        except BaseException:
            _ip("netns", "del", netns)
            raise
    try:
        _ip("link", "set", host_if, "up")
        for args in (("addr", "add", f"{node_addr}/{PREFIX}", "dev", node_if),
                     ("link", "set", node_if, "up"), ("link", "set", "lo", "up")):
            _ip("netns", "exec", netns, "ip", *args)
        yield NodeNetwork(Path("/run/netns") / netns, host_addr, node_addr)
    finally:
        # Deleting the namespace deletes its end of the pair, and so the pair.
        _ip("netns", "del", netns)


@contextlib.contextmanager
def _overlay(lower: Path, work: Path) -> Iterator[Path]:
    upper, scratch, merged = work / "upper", work / "overlay-work", work / "root"
    for d in (upper, scratch, merged):
        d.mkdir(parents=True)
    _run(["mount", "-t", "overlay", "overlay", "-o",
          f"lowerdir={lower},upperdir={upper},workdir={scratch}", str(merged)], timeout_s=30)
    try:
        yield merged
    finally:
        _run(["umount", str(merged)], timeout_s=60)


def _uid_gid(root: Path, user: str) -> tuple[int, int]:
    for line in (root / "etc" / "passwd").read_text().splitlines():
        fields = line.split(":")
        if fields[0] == user:
            return int(fields[2]), int(fields[3])
    raise AssertionError(f"no user {user} in {root}/etc/passwd")


@contextlib.contextmanager
def booted_node(rootfs: Path, work: Path, files: Mapping[str, bytes],
                network: NodeNetwork) -> Iterator[BootedNode]:
    """Boot `rootfs` (on an overlay under `work`, with `files` -- absolute paths on the
    node -- written into it first) in `network` and yield once systemd reports the boot
    finished and SSH_USER can log in."""
    work.mkdir(parents=True)
    key = work / "id_ed25519"
    _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], timeout_s=30)
    log = work / "console.log"
    with _overlay(rootfs, work) as root:
        uid, gid = _uid_gid(root, SSH_USER)
        ssh_dir = root / "home" / SSH_USER / ".ssh"
        ssh_dir.mkdir(mode=0o700)
        (ssh_dir / "authorized_keys").write_bytes(key.with_suffix(".pub").read_bytes())
        for p in (ssh_dir, ssh_dir / "authorized_keys"):
            os.chown(p, uid, gid)
        for path, data in files.items():
            target = root / path.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        machine = f"urbanpulse-node-{os.getpid()}"
        # No systemd on this machine to register with or to give the container a scope:
        # --register=no --keep-unit (the container's systemd still gets its own cgroups).
        argv = ["systemd-nspawn", "--quiet", f"--directory={root}", "--boot",
                f"--machine={machine}", "--register=no", "--keep-unit",
                f"--network-namespace-path={network.netns}", "--console=passive",
                # nspawn's own allow list leaves out @clock for a container without
                # CAP_SYS_TIME, so adjtimex failed with EPERM even for root in the container
                # and the agent's clock check (modes = 0, read only) could not run. Allowed
                # here, the calls read the clock's state as on a real node; without the
                # capability the kernel still refuses any change (`date -s` fails).
                "--system-call-filter=adjtimex clock_adjtime"]
        node = BootedNode(root, key, log, argv, network.node_addr)
        try:
            node.boot()
            yield node
        finally:
            node.stop()


def _wait_until_up(node: BootedNode, proc: subprocess.Popen[bytes]) -> None:
    def logged_in() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"systemd-nspawn exited {proc.returncode}:\n"
                                 f"{node.log.read_text(errors='replace')[-3000:]}")
        return subprocess.run(node.ssh_argv("true"), capture_output=True, timeout=30,
                              check=False).returncode == 0

    wait_for(logged_in, BOOT_TIMEOUT_S, f"SSH on the booted node ({node.log})", every_s=0.5)
    state = subprocess.run(node.ssh_argv("systemctl is-system-running --wait"), capture_output=True,
                           text=True, timeout=BOOT_TIMEOUT_S, check=False).stdout.strip()
    if state != "running":
        failed = subprocess.run(node.ssh_argv("systemctl --failed --no-pager"), capture_output=True,
                                text=True, timeout=30, check=False).stdout
        raise AssertionError(f"the node's systemd says {state!r} after boot:\n{failed}")


class TcpRelay:
    """Forwards connections to (host, port) to 127.0.0.1:target_port, byte for byte
    (TLS stays end to end). The local stack listens on 127.0.0.1 only (StackConfig refuses
    another address), and the node reaches this machine on the veth address only."""

    def __init__(self, host: str, port: int, target_port: int) -> None:
        self.host, self.port, self.target_port = host, port, target_port
        self._stop = threading.Event()
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._server: socket.socket | None = None

    def start(self) -> None:
        server = socket.create_server((self.host, self.port))
        server.settimeout(0.2)
        self._server = server
        self._spawn(self._accept, server)

    def _spawn(self, target: object, *args: object) -> None:
        t = threading.Thread(target=target, args=args, daemon=True)  # type: ignore[arg-type]
        t.start()
        self._threads.append(t)

    def _accept(self, server: socket.socket) -> None:
        while not self._stop.is_set():
            try:
                client, _ = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return  # closed by stop()
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
            except OSError:
                client.close()
                continue
            client.settimeout(None)
            upstream.settimeout(None)
            with self._lock:
                self._sockets += [client, upstream]
            self._spawn(self._pump, client, upstream)
            self._spawn(self._pump, upstream, client)

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_RDWR)

    def stop(self) -> None:
        self._stop.set()
        if self._server is not None:
            self._server.close()
        with self._lock:
            for s in self._sockets:
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()
        deadline = time.monotonic() + 10
        for t in self._threads:
            t.join(timeout=max(0.0, deadline - time.monotonic()))


# The central side's node (test_ansible_cloud_booted.py): the same image with the broker's and
# InfluxDB's Debian packages as well, which its roles install (from a mirror the node cannot
# reach). A cache entry of its own, under other names than the edge node's: neither test's
# cache replaces the other's.
CLOUD_PACKAGES = (*PACKAGES, "mosquitto", "influxdb")
CLOUD_IMAGE_RECIPE = 1


def cached_cloud_rootfs(cache: Path) -> Path:
    """The central node's root file system: cached_rootfs's, made by debootstrap with
    CLOUD_PACKAGES on the first call (older cloud images in the cache are removed then)."""
    return _cached_image(cache, "cloud-rootfs", CLOUD_PACKAGES, CLOUD_IMAGE_RECIPE)


def cached_cloud_wheels(cache: Path, requirements: Sequence[str]) -> Path:
    """As cached_wheels, for the central node's requirements, kept beside the edge node's."""
    return _cached_wheels(cache, "cloud-wheels", requirements)


# A site gateway's host (test_ansible_site_gateway_booted.py): the edge node's image with
# Debian's mosquitto, which the site broker's role installs; its wheels are the edge node's.
GATEWAY_PACKAGES = (*PACKAGES, "mosquitto")
GATEWAY_IMAGE_RECIPE = 1


def cached_gateway_rootfs(cache: Path) -> Path:
    """The gateway host's root file system, as cached_cloud_rootfs with GATEWAY_PACKAGES."""
    return _cached_image(cache, "gateway-rootfs", GATEWAY_PACKAGES, GATEWAY_IMAGE_RECIPE)


# -- what the booted tests give the play ---------------------------------------------------

def extra_requirements(extra: str) -> list[str]:
    """The project's optional dependencies `extra` (pyproject.toml): what pip installs on
    the node with the project's wheel, from the cached wheels."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    requirements: list[str] = project["optional-dependencies"][extra]
    return requirements


def node_files(hostname: str, hosts: str, wheels: Path) -> dict[str, bytes]:
    """What a node boots with (booted_node's `files`): its name, `hosts` as /etc/hosts (the
    names its services reach, as a deployment's DNS would give them), and pip taking the
    cached `wheels`: no index is reachable from the node."""
    files = {"/etc/hosts": hosts.encode(), "/etc/hostname": f"{hostname}\n".encode(),
             "/etc/pip.conf": b"[global]\nno-index = true\nfind-links = /srv/wheels\n"}
    files.update({f"/srv/wheels/{w.name}": w.read_bytes() for w in wheels.glob("*.whl")})
    return files


def fresh_apt_lists(node: BootedNode) -> None:
    """The apt tasks' cache_valid_time: lists as fresh as an image's first boot (the node
    has no mirror to update them from)."""
    node.run("sudo touch /var/lib/apt/lists /var/lib/apt/lists/*_Packages")


def ssh_host_vars(node: BootedNode) -> dict[str, str]:
    """An inventory host's variables for ansible-playbook to log in to `node`."""
    return {
        "ansible_host": node.addr,
        "ansible_user": SSH_USER,
        "ansible_ssh_private_key_file": str(node.key),
        "ansible_ssh_common_args": "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null",
        "ansible_python_interpreter": "/usr/bin/python3",
    }


def ansible_env(work: Path) -> dict[str, str]:
    """ansible-playbook's environment: the project's ansible.cfg, its temporary files under
    `work`."""
    return {**os.environ, "ANSIBLE_CONFIG": str(ANSIBLE / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_LOCAL_TEMP": str(work / "ansible-tmp"), "ANSIBLE_HOME": str(work / "ansible-home")}


# -- what the booted tests ask of a provisioned node ---------------------------------------

PLAY_TIMEOUT_S = 600


def play(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """An ansible-playbook run that must succeed without warnings."""
    out = subprocess.run(argv, cwd=ANSIBLE, env=env, capture_output=True, text=True,
                         timeout=PLAY_TIMEOUT_S, check=False)
    assert out.returncode == 0, out.stdout[-8000:] + out.stderr[-4000:]
    assert "WARNING" not in out.stderr, out.stderr
    return out


def assert_no_change(out: subprocess.CompletedProcess[str], host: str) -> None:
    """The play's recap for `host` says it changed nothing."""
    recap = [line for line in out.stdout.splitlines() if line.startswith(host) and "ok=" in line]
    assert recap, out.stdout[-6000:]
    assert "changed=0" in recap[-1], out.stdout[-8000:]


def unit(node: BootedNode, service: str) -> dict[str, str]:
    out = node.run(f"systemctl show {service} -p ActiveState -p SubState -p MainPID -p NRestarts "
                   "-p User -p ExecMainStatus")
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def running_unit(node: BootedNode, service: str) -> dict[str, str]:
    """The service's properties once it is active (running); its journal if it never is."""
    def active() -> dict[str, str] | None:
        props = unit(node, service)
        return props if props["ActiveState"] == "active" and props["SubState"] == "running" else None

    try:
        return wait_for(active, 30, f"{service} active (running)")
    except AssertionError as exc:
        journal = subprocess.run(
            node.ssh_argv(f"systemctl status {service} --no-pager; "
                          f"sudo journalctl -u {service} --no-pager -n 60"),
            capture_output=True, text=True, timeout=30, check=False).stdout
        raise AssertionError(f"{exc}\n{journal}") from None


def status_fields(text: str) -> dict[str, str]:
    """/proc/<pid>/status as a dict."""
    fields = {}
    for line in text.splitlines():
        name, _, value = line.partition(":")
        fields[name] = value.strip()
    return fields


def assert_hardened(node: BootedNode, pid: str, user: str, state_dir: str, what: str) -> None:
    """The process runs as `user` with no capability, no_new_privs and a system-call filter,
    on a read-only root but for `state_dir`: even root in its mount namespace cannot write
    outside it."""
    uid = node.run(f"id -u {user}").strip()
    status = status_fields(node.run(f"sudo cat /proc/{pid}/status"))
    assert status["Uid"].split() == [uid] * 4, status["Uid"]
    assert status["CapEff"] == status["CapPrm"] == status["CapBnd"] == "0" * 16
    assert status["NoNewPrivs"] == "1"
    assert status["Seccomp"] == "2", f"no system-call filter on the {what}"
    mounts = {}
    for line in node.run(f"sudo cat /proc/{pid}/mountinfo").splitlines():
        fields = line.split()
        mounts[fields[4]] = set(fields[5].split(","))
    assert "ro" in mounts["/"], mounts["/"]
    assert "rw" in mounts[state_dir], mounts.get(state_dir)
    probe = subprocess.run(node.ssh_argv(f"sudo nsenter -t {pid} -m touch /opt/urbanpulse/probe"),
                           capture_output=True, text=True, timeout=30, check=False)
    assert probe.returncode != 0, probe
    assert "Read-only file system" in probe.stderr, probe.stderr
