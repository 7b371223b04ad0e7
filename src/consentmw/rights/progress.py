"""A progress bar on standard error for long exports and erasures.

Written by hand rather than taken from a library (tqdm, rich): it is one line of text
redrawn with ``\\r`` at most ten times a second, and a runtime dependency for that would be
installed into every site that uses the middleware. It draws only when the stream is a
terminal, so scripts, pipes and logs never see it; with no known total it counts instead.

Not for the web process: only the command line shows progress.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

__all__ = ["Progress"]

_WIDTH = 30
_INTERVAL = 0.1


class Progress:
    """``Progress(label, total)``; call :meth:`step` per item, :meth:`done` at the end.

    ``stream`` defaults to ``sys.stderr``; ``enabled`` defaults to ``stream.isatty()``.
    Disabled, every method does nothing.
    """

    def __init__(
        self,
        label: str,
        total: int | None = None,
        *,
        stream: TextIO | None = None,
        enabled: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.label = label
        self.total = total
        self.count = 0
        self._stream = stream if stream is not None else sys.stderr
        if enabled is None:
            isatty = getattr(self._stream, "isatty", None)
            enabled = bool(isatty()) if isatty is not None else False
        self.enabled = enabled
        self._clock = clock
        self._drawn = 0.0
        self._shown = False

    def step(self, n: int = 1) -> None:
        """Count ``n`` more items (and redraw, at most ten times a second)."""
        self.count += n
        if self.enabled:
            now = self._clock()
            if now - self._drawn >= _INTERVAL:
                self._drawn = now
                self._draw()

    def line(self) -> str:
        """The text of the bar as it stands."""
        total = self.total
        if total:
            done = min(self.count, total)
            filled = _WIDTH * done // total
            bar = "#" * filled + "." * (_WIDTH - filled)
            return f"{self.label} [{bar}] {100 * done // total:3d}% {done}/{total}"
        return f"{self.label} {self.count}"

    def _draw(self) -> None:
        self._stream.write("\r" + self.line())
        self._stream.flush()
        self._shown = True

    def done(self) -> None:
        """Draw the final state and end the line (unless there was nothing at all to show)."""
        if not self.enabled:
            return
        if self.total is not None:
            self.count = max(self.count, self.total)
        if self._shown or self.total is not None or self.count:
            self._draw()
            self._stream.write("\n")
            self._stream.flush()
