"""System-call filters for tests, installed by the kernel's seccomp through libseccomp (the
library systemd's SystemCallFilter= uses): what a sandbox refuses the agent, played for
real in a child process. A filter cannot be taken back, so install one only in a process
made for it (`python -c` with `install_filter(...)` first).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
from collections.abc import Iterable

SCMP_ACT_ALLOW = 0x7FFF0000
_SCMP_ACT_ERRNO = 0x00050000


class SeccompUnavailable(RuntimeError):
    pass


def _lib() -> ctypes.CDLL:
    name = ctypes.util.find_library("seccomp") or "libseccomp.so.2"
    try:
        lib = ctypes.CDLL(name, use_errno=True)
    except OSError as exc:
        raise SeccompUnavailable(f"libseccomp is not here: {exc}") from exc
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_rule_add.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint]
    lib.seccomp_load.argtypes = [ctypes.c_void_p]
    lib.seccomp_release.argtypes = [ctypes.c_void_p]
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    return lib


def install_filter(names: Iterable[str], *, allow_listed: bool) -> None:
    """In this process and its children for good: with `allow_listed`, only the named
    calls are allowed and every other fails with EPERM (SystemCallFilter=NAMES with
    SystemCallErrorNumber=EPERM); else the named calls fail with EPERM and the rest are
    allowed (SystemCallFilter=~NAMES). Names this architecture lacks are skipped."""
    lib = _lib()
    eperm = _SCMP_ACT_ERRNO | errno.EPERM
    default, listed = (eperm, SCMP_ACT_ALLOW) if allow_listed else (SCMP_ACT_ALLOW, eperm)
    ctx = lib.seccomp_init(default)
    if not ctx:
        raise SeccompUnavailable("seccomp_init failed")
    try:
        for name in names:
            number = lib.seccomp_syscall_resolve_name(name.encode())
            if number < 0:
                continue
            rc = lib.seccomp_rule_add(ctx, listed, number, 0)
            if rc < 0:
                raise SeccompUnavailable(f"seccomp_rule_add({name}) failed: {-rc}")
        rc = lib.seccomp_load(ctx)
        if rc < 0:
            raise SeccompUnavailable(f"seccomp_load failed: {-rc}")
    finally:
        lib.seccomp_release(ctx)


CLOCK_READS = ("adjtimex", "clock_adjtime", "clock_adjtime64")
