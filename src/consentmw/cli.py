"""The ``consentmw`` command.

Exit codes: 0 success, 1 a negative answer (``suppressed``: not suppressed; ``receipts
verify``: the chain is broken), 2 usage or configuration errors. Every command takes
``--config`` (default ``$CONSENTMW_CONFIG`` or ``./consentmw.toml``).
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import sys
from collections.abc import Callable, Sequence
from typing import Any

from .config import Config
from .errors import ConfigError, ConsentMWError

__all__ = ["main"]

EXIT_OK = 0
EXIT_NO = 1
EXIT_USAGE = 2

Command = Callable[[argparse.Namespace], int]


def default_config_path() -> str:
    return os.environ.get("CONSENTMW_CONFIG") or "consentmw.toml"


def load_config(path: str | None) -> Config:
    """The configuration for a command; ``ConfigError`` says what is wrong."""
    target = path or default_config_path()
    if not os.path.exists(target):
        raise ConfigError(
            "--config", target, "no such file; pass --config PATH or set CONSENTMW_CONFIG"
        )
    return Config.load(target)


def add_config_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="the consentmw.toml (default: $CONSENTMW_CONFIG or ./consentmw.toml)",
    )


def out(text: str = "") -> None:
    sys.stdout.write(text + "\n")


def err(text: str) -> None:
    sys.stderr.write(text + "\n")


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """``text`` with control characters shown as ``\\xNN``: values that came from visitors
    (paths, names) must not drive the operator's terminal (escape sequences)."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain-text table; every cell passes :func:`printable`."""
    cells = [[printable("" if c is None else str(c)) for c in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    lines = ["  ".join(h.ljust(widths[i]) for i, h in enumerate(headers)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    for row in cells:
        lines.append("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip())
    return "\n".join(lines)


# ---------------------------------------------------------------------------- check


def _check_args(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser)
    parser.set_defaults(func=_check)


def _check(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    out(f"{config.source}: valid")
    out(f"site {config.site.name}, policy {config.policy.version} ({config.policy.model}), "
        f"{len(config.site.secret_keys)} secret key(s)")  # fmt: skip
    out()
    out("Purposes")
    out(
        format_table(
            ["id", "title", "required", "gpc_opt_out"],
            [
                [p.id, p.title, "yes" if p.required else "", "yes" if p.gpc_opt_out else ""]
                for p in config.purposes.values()
            ],
        )
    )
    out()
    out("Cookies")
    rows = []
    for entry in config.declaration():
        rows.append(
            [
                entry["name"] + ("*" if entry["match"] == "prefix" else ""),
                entry["purpose"] or "",
                entry["lifetime"],
                entry["description"],
            ]
        )
    out(format_table(["cookie", "purpose", "lifetime", "description"], rows))
    out(f"undeclared cookies: {config.cookie_settings.undeclared}")
    return EXIT_OK


# ---------------------------------------------------------------------------- keys


def _keys_args(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="keys_command", required=True, metavar="generate")
    gen = sub.add_parser("generate", help="print a new random secret key")
    gen.add_argument("--bytes", type=int, default=32, help="random bytes (default 32)")
    gen.set_defaults(func=_keys_generate)


def _keys_generate(args: argparse.Namespace) -> int:
    if args.bytes < 16:
        err("consentmw: --bytes must be at least 16")
        return EXIT_USAGE
    out(secrets.token_urlsafe(args.bytes))
    return EXIT_OK


# ---------------------------------------------------------------------------- relay


def _relay_args(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser)
    parser.add_argument(
        "--from",
        dest="source",
        metavar="URL",
        help="the Redis stream to read (default: the first redis:// URL in sinks.events)",
    )
    parser.add_argument(
        "--to",
        dest="target",
        metavar="URL",
        help="the sink to write to (default: sinks.consent_log, e.g. the central PostgreSQL)",
    )
    parser.add_argument("--group", default="consentmw", help="consumer group (default consentmw)")
    parser.add_argument("--consumer", help="this consumer's name (default: host and pid)")
    parser.add_argument(
        "--once", action="store_true", help="stop when the stream has nothing left to read"
    )
    parser.set_defaults(func=_relay)


def _relay(args: argparse.Namespace) -> int:
    import signal
    import threading

    from .sinks.redis import relay

    source, target = args.source, args.target
    if source is None or target is None:
        config = load_config(args.config)
        if source is None:
            source = next((u for u in config.sinks.events if u.startswith("redis://")), None)
        if target is None:
            target = config.sinks.consent_log
    if source is None:
        err("consentmw: no Redis stream to read; pass --from redis://host:6379/0?stream=events")
        return EXIT_USAGE
    stop: threading.Event | None = None
    if not args.once:
        stop = threading.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: stop.set() if stop is not None else None)
    stats = relay(source, target, group=args.group, consumer=args.consumer, stop=stop)
    out(" ".join(f"{key}={value}" for key, value in sorted(stats.items())))
    return EXIT_OK


# ---------------------------------------------------------------------------- main

_BUILTIN: list[tuple[str, str, Callable[[argparse.ArgumentParser], None]]] = [
    ("check", "validate a configuration and print the cookie declaration", _check_args),
    ("keys", "secret keys: 'keys generate' prints a new one", _keys_args),
    (
        "relay",
        "move events from a Redis stream into another sink (many hosts, one store)",
        _relay_args,
    ),
]


def _extension_commands() -> list[tuple[str, str, Callable[[argparse.ArgumentParser], None]]]:
    """Commands defined in other modules (demo, rights, reports, relay)."""
    found: list[tuple[str, str, Callable[[argparse.ArgumentParser], None]]] = []
    for module_name in ("consentmw.demo", "consentmw.rights.cli"):
        try:
            module = __import__(module_name, fromlist=["COMMANDS"])
        except ModuleNotFoundError as exc:
            if exc.name is not None and module_name.startswith(exc.name):
                continue
            raise
        found.extend(getattr(module, "COMMANDS", []))
    return found


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="consentmw",
        description="Consent, signed cookies and privacy rights for WSGI sites.",
    )
    from . import __version__

    parser.add_argument("--version", action="version", version=f"consentmw {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, help_text, add in [*_BUILTIN, *_extension_commands()]:
        add(sub.add_parser(name, help=help_text, description=help_text))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on usage errors, 0 on --help
        return int(exc.code or 0)
    func: Command = args.func
    try:
        return func(args)
    except ConfigError as exc:
        err(f"consentmw: configuration error: {exc}")
        return EXIT_USAGE
    except ConsentMWError as exc:
        err(f"consentmw: {exc}")
        return EXIT_USAGE
    except KeyboardInterrupt:
        err("consentmw: interrupted")
        return 130
    except BrokenPipeError:
        return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
