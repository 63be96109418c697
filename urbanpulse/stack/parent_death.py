"""Children that end with the process that started them, however it ends (SIGKILL, the OOM
killer): Linux's parent-death signal (`PR_SET_PDEATHSIG`), set by `setpriv` (util-linux,
essential on Debian) in the child, between fork and exec.

Not by a Python `preexec_fn`: it makes `subprocess` fork (instead of vfork), which runs
every library's fork handlers in the parent, and runs Python in the child between fork and
exec, which the Python documentation calls unsafe in a process with threads (the child can
deadlock before exec); the demo has threads when it starts its children.

The kernel sends the signal when the *thread* that started the child ends (the process's end
included), so start a child from a thread that lives as long as the child should. It sends
it again each time the child is handed to another of the parent's threads as they end: a
child that stops on it must take several. The signal survives exec, but not the exec of a
set-user-ID or set-group-ID program nor a change of the child's user or group.

A parent that ends between the fork and the prctl leaves the child unsignalled: its parent
is then init or a subreaper. So after the prctl a shell checks that its parent is still the
process that started it, and exits (PARENT_GONE) otherwise; then it becomes the command
(exec, same pid: `Popen.pid` is the command's). The check sees processes, not threads: a
starting thread that ends (its process living on) before the prctl leaves the child
unsignalled, as the Python `preexec_fn` this replaces did."""

from __future__ import annotations

import os
import signal
from collections.abc import Sequence
from pathlib import Path

from urbanpulse.stack.errors import BinaryMissing

SETPRIV = Path("/usr/bin/setpriv")
SH = "/bin/sh"
PARENT_GONE = 75  # the shell's exit code when the parent ended before the prctl
# $1: the pid of the parent that must still be there; the command after it.
_CHECK = f'[ "$PPID" = "$1" ] || exit {PARENT_GONE}; shift; exec "$@"'


def ends_with_parent(argv: Sequence[str], *, sig: signal.Signals = signal.SIGTERM,
                     parent: int | None = None) -> list[str]:
    """`argv` run so that it gets `sig` when the thread of this process (or of `parent`)
    that starts it ends. Pass the result to `subprocess.Popen`, without a `preexec_fn`."""
    if not argv:
        raise ValueError("ends_with_parent: an empty command")
    if not SETPRIV.is_file():
        raise BinaryMissing("setpriv", str(SETPRIV), "util-linux")
    parent = os.getpid() if parent is None else parent
    return [str(SETPRIV), "--pdeathsig", sig.name, "--", SH, "-c", _CHECK, "sh", str(parent),
            *argv]
