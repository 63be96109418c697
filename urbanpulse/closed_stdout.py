"""A reader that stops early (`urbanpulse bridge decode ... | head -1`): the command ends
quietly with exit code 1 and nothing on stderr, as Python's documented recipe does ("Note on
SIGPIPE"), instead of `[Errno 32] Broken pipe` or "Exception ignored ... BrokenPipeError".

`run_command` does it around a command's main (the `urbanpulse` dispatcher, and a module run
as `python -m`). A command that catches OSError itself lets this one through:

    except OSError as exc:
        if is_closed_stdout(exc):
            raise
"""

from __future__ import annotations

import os
import select
import sys
from collections.abc import Callable

EXIT_CLOSED_STDOUT = 1


def stdout_closed() -> bool:
    """Whether standard output is a pipe whose reader has gone (poll: POLLERR)."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # replaced by an object without a descriptor
        return False
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    return any(events & select.POLLERR for _, events in poller.poll(0))


def is_closed_stdout(exc: BaseException) -> bool:
    """Whether `exc` is standard output's reader having gone, not a port's, a socket's or a
    child's pipe failing (those are errors to report)."""
    return isinstance(exc, BrokenPipeError) and stdout_closed()


def silence_stdout() -> None:
    """Point standard output at /dev/null: nothing more may reach the closed pipe, not even
    the interpreter's flush at exit."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    finally:
        os.close(devnull)


def run_command(run: Callable[[], int]) -> int:
    """`run()`'s exit code, or EXIT_CLOSED_STDOUT, quietly, when standard output's reader has
    gone. A BrokenPipeError from anything else goes on up."""
    try:
        try:
            code = run()
        except SystemExit:  # argparse's --help and usage errors leave from inside
            sys.stdout.flush()
            raise
        sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's exit
        return code
    except BrokenPipeError:
        if not stdout_closed():
            raise
        silence_stdout()
        return EXIT_CLOSED_STDOUT
