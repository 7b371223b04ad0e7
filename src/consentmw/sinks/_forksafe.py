"""A lock that survives ``fork()``: the sinks' one piece of shared fork handling."""

from __future__ import annotations

import os
import threading

__all__ = ["ProcessLock"]


class ProcessLock:
    """A ``threading.Lock`` per process.

    After ``fork()`` the parent's lock may be held by a thread that does not exist in the
    child; :meth:`get` then hands out a new lock there instead of the inherited one.
    """

    __slots__ = ("_lock", "_pid")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pid = os.getpid()

    def get(self) -> threading.Lock:
        """This process's lock."""
        pid = os.getpid()
        if self._pid != pid:
            self._lock = threading.Lock()
            self._pid = pid
        return self._lock
