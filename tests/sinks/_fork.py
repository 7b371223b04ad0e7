"""Running code in real forked child processes, for the fork-safety and multi-process tests."""

from __future__ import annotations

import os
import select
import signal
import sys
import traceback
from collections.abc import Callable, Iterable

import pytest

# Python 3.12+ warns when a process with threads forks. The tests fork on purpose, to prove
# the sinks reopen their connections in the child; the child only runs the sink code.
fork_warning = pytest.mark.filterwarnings(
    "ignore:This process .* is multi-threaded:DeprecationWarning"
)


def fork_call(fn: Callable[[], object]) -> int:
    """Run ``fn`` in a forked child; return its pid. The child exits 0 if ``fn`` returned,
    1 if it raised (traceback on stderr), never running the parent's pytest code."""
    pid = os.fork()
    if pid == 0:  # the child
        code = 1
        try:
            fn()
            code = 0
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stderr.flush()
            os._exit(code)
    return pid


def wait_children(pids: Iterable[int], timeout: float = 60.0) -> list[int]:
    """Wait for each child; return their exit codes. On a hang, kill every child still
    running and fail the test."""
    pids = list(pids)
    codes = []
    for n, pid in enumerate(pids):
        if hasattr(os, "pidfd_open"):
            fd = os.pidfd_open(pid)
            try:
                ready, _, _ = select.select([fd], [], [], timeout)
            finally:
                os.close(fd)
            if not ready:
                for other in pids[n:]:
                    os.kill(other, signal.SIGKILL)
                    os.waitpid(other, 0)
                pytest.fail(f"child {pid} did not finish within {timeout}s")
        _, status = os.waitpid(pid, 0)
        codes.append(os.waitstatus_to_exitcode(status))
    return codes
