"""Server processes owned by the stack: started detached, found again by pidfile + cmdline.

A pidfile alone is not trusted: a pid is ours only while /proc/<pid>/cmdline still
names our binary and our config file, so `down` never signals a stranger that reused
the pid, and never touches a system-wide mosquitto/influxd.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import secrets
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from pathlib import Path

from urbanpulse.stack.errors import StackError
from urbanpulse.stack.files import write_file

# The shell forks the server into the background and exits at once, so the server is
# re-parented (no zombie, no Popen to keep) and survives the command that started it.
_LAUNCHER = 'log=$1; shift; "$@" </dev/null >>"$log" 2>&1 & echo $!'


def start_detached(
    argv: Sequence[str], *, output: Path, pidfile: Path, env: Mapping[str, str] | None = None
) -> int:
    """Start `argv` in the background, its output appended to `output`; its pid, also written
    to `pidfile`. `env`: variables set for it on top of this process's environment."""
    output.parent.mkdir(parents=True, exist_ok=True)
    try:
        done = subprocess.run(
            ["/bin/sh", "-c", _LAUNCHER, "urbanpulse-launch", str(output), *argv],
            env=None if env is None else {**os.environ, **env},
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            start_new_session=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise StackError(f"could not launch {argv[0]}: {exc}") from exc
    pid = int(done.stdout.strip())
    write_file(pidfile, f"{pid}\n", mode=0o644)
    return pid


def _state(pid: int) -> str | None:
    """The process state letter from /proc, None if there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return stat.rsplit(")", 1)[1].split()[0]


def is_alive(pid: int) -> bool:
    state = _state(pid)
    return state is not None and state not in ("Z", "X")


def command_line(pid: int) -> list[str] | None:
    """The arguments `pid` runs with, None if it is not alive (a pid read from a file may
    have been reused by any process since: callers check what it runs)."""
    if not is_alive(pid):
        return None
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (FileNotFoundError, ProcessLookupError):
        return None
    return [os.fsdecode(a) for a in args if a]


def is_ours(pid: int, binary: str, config: Path) -> bool:
    args = command_line(pid)
    if not args or Path(args[0]).name != Path(binary).name:
        return False
    return str(config) in args


def read_pid(pidfile: Path) -> int | None:
    try:
        return int(pidfile.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def running_pid(pidfile: Path, binary: str, config: Path) -> int | None:
    pid = read_pid(pidfile)
    if pid is not None and is_ours(pid, binary, config):
        return pid
    return None


def stop(pidfile: Path, binary: str, config: Path, *, timeout_s: float = 15.0) -> bool:
    """SIGTERM our process (SIGKILL after `timeout_s`); True if one was running."""
    return stop_pid(pidfile, lambda pid: is_ours(pid, binary, config), binary, timeout_s=timeout_s)


def stop_pid(pidfile: Path, ours: Callable[[int], bool], what: str, *,
             timeout_s: float = 15.0) -> bool:
    """SIGTERM the process `pidfile` names if `ours(pid)` says it is the one (a pid in a
    file may have been reused by any process since), SIGKILL after `timeout_s`; removes
    the file; True if one was running. StackError naming `what` if it outlives SIGKILL."""
    pid = read_pid(pidfile)
    if pid is None or not ours(pid):
        pidfile.unlink(missing_ok=True)
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    if not wait_until(lambda: not is_alive(pid), timeout_s=timeout_s):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        if not wait_until(lambda: not is_alive(pid), timeout_s=5.0):
            raise StackError(f"{what} (pid {pid}) did not exit after SIGKILL")
    pidfile.unlink(missing_ok=True)
    return True


def stop_group(proc: subprocess.Popen[bytes], timeout_s: float,
               kill_wait_s: float = 5.0) -> int | None:
    """SIGTERM to the process group `proc` leads, SIGKILL if it has not ended `timeout_s`
    later; its exit code (None if it outlived the SIGKILL by `kill_wait_s`)."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(kill_wait_s)
    return proc.returncode


def wait_until(predicate: Callable[[], bool], *, timeout_s: float, poll_s: float = 0.02) -> bool:
    """Poll `predicate` until it is true (True) or `timeout_s` has passed (False)."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(poll_s)
    return True


# "LOW-HIGH": free_ports picks from these ports and reserves what it picks, for every process
# of this user on the machine (tests/conftest.py sets it). Ports that the kernel picks for
# bind(("...", 0)) and outgoing connections come from net.ipv4.ip_local_port_range, so a
# range below it is never handed out by the kernel between free_ports and the server's bind,
# and the reservation keeps other test processes (pytest-xdist's workers, another run) off it.
RESERVED_PORTS_ENV = "URBANPULSE_TEST_PORTS"
RESERVED_FOR_S = 600.0


def free_ports(n: int, bind: str = "127.0.0.1") -> list[int]:
    """`n` distinct ports that were free on `bind` a moment ago (for tests and tools);
    with RESERVED_PORTS_ENV set, from its range and not picked by any process in the last
    RESERVED_FOR_S."""
    span = os.environ.get(RESERVED_PORTS_ENV)
    if span:
        return _reserve_ports(n, bind, span)
    with ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(n)]
        for sock in socks:
            sock.bind((bind, 0))
        return [sock.getsockname()[1] for sock in socks]


def _port_range(span: str) -> range:
    low, _, high = span.partition("-")
    try:
        ports = range(int(low), int(high) + 1)
    except ValueError:
        ports = range(0)
    if not ports or ports[0] < 1024 or ports[-1] > 65535:
        raise StackError(f"{RESERVED_PORTS_ENV} must be LOW-HIGH within 1024-65535, got {span!r}")
    return ports


def _reserve_ports(n: int, bind: str, span: str) -> list[int]:
    ports = _port_range(span)
    book = Path(tempfile.gettempdir()) / f"urbanpulse-reserved-ports-{os.getuid()}"
    with open(book, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        handle.seek(0)
        now = time.time()
        reserved: dict[int, float] = {}
        for entry in handle.read().split():
            number, _, until = entry.partition(":")
            with contextlib.suppress(ValueError):
                if float(until) > now:
                    reserved[int(number)] = float(until)
        chosen: list[int] = []
        start = secrets.randbelow(len(ports))
        with ExitStack() as stack:  # each picked port stays bound until all n are
            for i in range(len(ports)):
                port = ports[(start + i) % len(ports)]
                if port in reserved:
                    continue
                sock = stack.enter_context(socket.socket())
                try:
                    sock.bind((bind, port))
                except OSError:
                    continue
                chosen.append(port)
                if len(chosen) == n:
                    break
        if len(chosen) < n:
            raise StackError(f"fewer than {n} ports of {span} ({RESERVED_PORTS_ENV}) are free "
                             f"and unreserved on {bind}")
        reserved.update(dict.fromkeys(chosen, now + RESERVED_FOR_S))
        handle.seek(0)
        handle.truncate()
        handle.write("".join(f"{port}:{until:.0f}\n" for port, until in reserved.items()))
    return chosen


def port_is_free(bind: str, port: int) -> bool:
    """True if a server could bind (bind, port) now (SO_REUSEADDR, as the servers do)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((bind, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise StackError(f"cannot probe {bind}:{port}: {exc}") from exc
    return True


def tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return f"({path} does not exist)"
    return "\n".join(text.splitlines()[-lines:])
