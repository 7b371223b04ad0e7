"""A site run in a child process by the real-process tests of the dispatcher.

``python -m tests.core.proc_site MODE DATA_DIR [N]``; events go to ``DATA_DIR/events.db``
through the real SQLite sink. ``DATA_DIR/down`` existing makes that sink fail (retryably)
as a stopped database server would.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from werkzeug.datastructures import MultiDict
from werkzeug.test import Client

import consentmw
from consentmw import Event, SinkError
from consentmw.sinks.sqlite import SQLiteSink


class SwitchableSink(SQLiteSink):
    def __init__(self, path: str, flag: Path) -> None:
        super().__init__(path)
        self.flag = flag

    def write(self, events: Sequence[Event]) -> None:
        if self.flag.exists():
            raise SinkError("database unreachable", retryable=True)
        super().write(events)


def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]


def site(
    data: Path, *, consent: bool = True, **dispatch: Any
) -> tuple[consentmw.ConsentMiddleware, Client]:
    url = "sqlite:///" + str(data / "events.db")
    config = {
        "site": {"name": "proc.test", "secret_keys": ["proc-secret-0123456789abcdef"]},
        "purposes": {"necessary": {"required": True}, "analytics": {}},
        "cookie_settings": {"secure": False},
        "tracking": {"tracking_purpose": "analytics"},
        "sinks": {"events": [url], "consent_log": "memory://"},
        "dispatch": {
            "spool": str(data / "spool.db"),
            "flush_interval_ms": 50,
            "batch_size": 100,
            "retry_base_ms": 5,
            "retry_max_ms": 50,
            "max_retries": 1,
            **dispatch,
        },
    }
    sink = SwitchableSink(str(data / "events.db"), data / "down")
    mw = consentmw.ConsentMiddleware(app, config, sinks={url: sink})
    client = Client(mw)
    if not consent:
        return mw, client
    token = client.get("/_consent").get_json()["csrf"]
    client.post(
        "/_consent",
        data=MultiDict([("choice", "accept_all"), ("csrf", token)]),
        headers={"Sec-Fetch-Site": "same-origin"},
    )
    return mw, client


def main(argv: list[str]) -> int:
    mode, data = argv[0], Path(argv[1])
    n = int(argv[2]) if len(argv) > 2 else 1000
    if mode == "exit":
        # Requests, then a plain exit: no close(), no flush(). atexit must deliver.
        _, client = site(data, flush_interval_ms=60_000, batch_size=100_000, queue_size=100_000)
        for i in range(n):
            client.get(f"/p/{i}")
        return 0
    if mode == "fork":
        mw, client = site(data)
        client.get("/parent/before")
        pid = os.fork()
        if pid == 0:
            for i in range(n):
                client.get(f"/child/{i}")
            ok = mw.flush(10)
            if not ok or mw.stats()["written"] < n:
                print(f"child flush ok={ok} stats={mw.stats()}", file=sys.stderr, flush=True)
                os._exit(3)
            os._exit(0)
        for i in range(n):
            client.get(f"/parent/{i}")
        _, status = os.waitpid(pid, 0)
        ok = mw.close(10)
        code = os.waitstatus_to_exitcode(status)
        if not ok or code != 0:
            print(f"parent close ok={ok} child exit={code} stats={mw.stats()}", file=sys.stderr)
            return 4
        return 0
    if mode == "stream":
        # The sink is down: events go to the spool; report what the spool acknowledged.
        mw, client = site(data)
        i = 0
        while True:
            for _ in range(100):
                client.get(f"/s/{i}")
                i += 1
            mw.flush(10)
            print(f"spooled={mw.stats()['spooled']}", flush=True)
    if mode == "replay":
        mw, _ = site(data, consent=False)
        mw.engine.dispatcher.start()
        deadline = time.monotonic() + 30
        while mw.engine.spool.count() and time.monotonic() < deadline:
            mw.engine.dispatcher.wake.set()
            time.sleep(0.05)
        return 0 if mw.close(10) else 5
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
