"""The hand-written progress bar: drawn on terminals only, rate-limited, ends its line."""

from __future__ import annotations

import io

from consentmw.rights.progress import Progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class Ticks:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 0.05
        return self.now


def test_nothing_is_drawn_off_a_terminal() -> None:
    stream = io.StringIO()
    bar = Progress("export", 10, stream=stream)
    for _ in range(10):
        bar.step()
    bar.done()
    assert stream.getvalue() == ""
    assert bar.count == 10


def test_a_bar_with_a_total() -> None:
    stream = Terminal()
    bar = Progress("export", 200, stream=stream, clock=Ticks())
    for _ in range(200):
        bar.step()
    bar.done()
    text = stream.getvalue()
    frames = text.split("\r")[1:]
    assert 50 <= len(frames) <= 101  # redrawn at most ten times a second of the fake clock
    assert frames[-1] == "export [" + "#" * 30 + "] 100% 200/200\n"
    assert bar.line().startswith("export [")


def test_a_counter_without_a_total() -> None:
    stream = Terminal()
    bar = Progress("finding", stream=stream, clock=Ticks())
    bar.step(5)
    bar.done()
    assert stream.getvalue().endswith("\rfinding 5\n")
    quiet = Terminal()
    Progress("finding", stream=quiet).done()  # nothing counted, nothing drawn
    assert quiet.getvalue() == ""
