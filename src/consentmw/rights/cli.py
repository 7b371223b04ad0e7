"""The rights commands of ``consentmw``: ``export``, ``rectify``, ``erase``, ``restrict``,
``optout-link``, ``suppressed``, ``receipts verify``, ``receipts show`` and ``report``.

``consentmw.cli`` adds every entry of :data:`COMMANDS` to its parser. Exit codes, as for every
command: 0 success; 1 a negative answer (``suppressed``: the address is *not* suppressed;
``receipts verify``: the chain is broken or does not reach ``--expect``; ``receipts show``: no
records); 2 usage or configuration errors (a bad address or subject included). Long exports
and erasures draw a progress bar on standard error when it is a terminal. Data goes to
standard output (or ``--output``), messages to standard error.

Not importable as an API: use :class:`consentmw.rights.Rights` from Python.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from typing import TextIO

from ..cli import EXIT_NO, EXIT_OK, EXIT_USAGE, add_config_argument, err, format_table, load_config
from ..config import Config
from ..events import format_ts, parse_ts
from ..sinks import MemorySink, Sink
from .progress import Progress
from .receipts import decision_rows
from .reports import DEFAULT_MIN_COUNT, FORMATS, REPORT_KEYS
from .service import Rights
from .suppression import CHANNELS, normalize_address

__all__ = ["COMMANDS"]

AddArguments = Callable[[argparse.ArgumentParser], None]


def _open(args: argparse.Namespace) -> Rights:
    return Rights.open(load_config(args.config))


def _time(value: str) -> str:
    """``--since`` / ``--until``: a date or an ISO-8601 time, as events store times."""
    try:
        return format_ts(parse_ts(value))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a date (2024-03-01) or an ISO-8601 time"
        ) from None


@contextlib.contextmanager
def _output(path: str | None) -> Iterator[TextIO]:
    """Standard output, or a new file readable by its owner only (exports hold personal
    data)."""
    if path is None or path == "-":
        yield sys.stdout
        return
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        yield fh


# ---------------------------------------------------------------------------- export


def _export_args(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser)
    parser.add_argument("subject", help="an e-mail address, a visitor id or a consent id")
    parser.add_argument(
        "-o", "--output", metavar="FILE", help="write the JSON here (default: standard output)"
    )
    parser.set_defaults(func=_export)


def _export(args: argparse.Namespace) -> int:
    with _open(args) as rights:
        finding = Progress("finding")
        subject = rights.resolve(args.subject, on_event=finding.step)
        finding.done()
        bar = Progress("export", subject.events)
        with _output(args.output) as fp:
            summary = rights.export(subject, fp, on_event=bar.step)
        bar.done()
    err(
        f"consentmw: exported {summary.events} event(s) and {summary.consent} consent "
        f"record(s) about {len(subject.identifiers)} identifier(s)"
    )
    return EXIT_OK


# ---------------------------------------------------------------------------- erase, rectify


def _wait_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--wait",
        type=float,
        metavar="SECONDS",
        help="seconds to wait before the second pass that catches events web processes "
        "still held (default: flush interval plus retry backoff; 0: one pass only)",
    )


def _erase_args(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser)
    parser.add_argument("subject", help="an e-mail address, a visitor id or a consent id")
    _wait_argument(parser)
    parser.set_defaults(func=_erase)


def _pause(rights: Rights, wait: float | None) -> float:
    seconds = rights.settle_seconds if wait is None else max(0.0, wait)
    if seconds:
        err(
            f"consentmw: waiting {seconds:g}s for web processes to write what they hold, "
            "then a second pass (--wait 0 skips it)"
        )
        time.sleep(seconds)
    return seconds


def _erase(args: argparse.Namespace) -> int:
    with _open(args) as rights:
        subject = rights.resolve(args.subject)
        bar = Progress("erase", len(subject.identifiers))
        first = rights.erase(subject, on_identifier=bar.step)
        bar.done()
        removed = first.total
        complete = first.complete
        if _pause(rights, args.wait):
            # The identifiers found before: the events that linked them are gone now.
            second = rights.erase(subject)
            removed += second.total
            complete = second.complete
    for name in first.not_erasable:
        err(f"consentmw: warning: {name} cannot erase; remove the subject's events there")
    err(
        f"consentmw: erased {removed} event(s) about {len(subject.identifiers)} identifier(s); "
        f"kept {first.consent_records_kept} pseudonymous consent record(s)"
        + (f" and the opt-out ({', '.join(first.suppressed)})" if first.suppressed else "")
    )
    if not complete:
        err("consentmw: the erasure may be incomplete (see the warnings); run it again")
        return EXIT_NO
    return EXIT_OK


def _rectify_args(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser)
    parser.add_argument("subject", help="an e-mail address, a visitor id or a consent id")
    parser.add_argument("--email", required=True, help="the correct e-mail address")
    _wait_argument(parser)
    parser.set_defaults(func=_rectify)


def _rectify(args: argparse.Namespace) -> int:
    with _open(args) as rights:
        subject = rights.resolve(args.subject)
        result = rights.rectify(subject, email=args.email)
        changed = result.total
        if result.subject.emails - {result.email} and _pause(rights, args.wait):
            changed += rights.rectify(subject, email=args.email).total
    err(f"consentmw: corrected the e-mail address on {changed} event(s)")
    return EXIT_OK


# ---------------------------------------------------------------------------- restrict


def _restrict_args(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser)
    parser.add_argument("subject", help="an e-mail address, a visitor id or a consent id")
    parser.add_argument(
        "--allow",
        action="append",
        default=[],
        metavar="PURPOSE",
        help="a purpose the data may still serve besides the one it was collected for (repeatable)",
    )
    parser.add_argument("--lift", action="store_true", help="lift the restriction instead")
    parser.set_defaults(func=_restrict)


def _restrict(args: argparse.Namespace) -> int:
    with _open(args) as rights:
        if args.lift:
            count = rights.lift_restriction(args.subject)
            err(f"consentmw: lifted the restriction of {count} identifier(s)")
            return EXIT_OK if count else EXIT_NO
        subject = rights.restrict(args.subject, allow=args.allow)
    err(f"consentmw: restricted {len(subject.identifiers)} identifier(s)")
    return EXIT_OK


# ---------------------------------------------------------------------------- opt-out


def _channel_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--channel", choices=CHANNELS, default="email", help="default: email")
    parser.add_argument("--purpose", help="one purpose only (default: every purpose)")


def _optout_link_args(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser)
    parser.add_argument("address", help="the e-mail address or telephone number")
    _channel_arguments(parser)
    parser.add_argument(
        "--base-url", metavar="URL", help="scheme and host (default: https://<site.name>)"
    )
    parser.add_argument(
        "--headers",
        action="store_true",
        help="print the List-Unsubscribe headers instead of the URL (e-mail only)",
    )
    parser.set_defaults(func=_optout_link)


def _optout_link(args: argparse.Namespace) -> int:
    base = args.base_url
    if base is not None and not base.startswith(("https://", "http://")):
        err("consentmw: --base-url must start with https:// or http://")
        return EXIT_USAGE
    config = load_config(args.config)
    # Signing needs no sink: build the token alone, so this works where the data is not.
    rights = Rights(config, sinks=_no_sinks(config))
    try:
        if args.headers:
            if args.channel != "email":
                err("consentmw: List-Unsubscribe headers are for e-mail")
                return EXIT_USAGE
            for name, value in rights.list_unsubscribe_headers(
                args.address, args.purpose, base_url=base
            ):
                sys.stdout.write(f"{name}: {value}\n")
        else:
            url = rights.optout_url(args.address, args.channel, args.purpose, base_url=base)
            sys.stdout.write(url + "\n")
    except ValueError as exc:
        err(f"consentmw: {exc}")
        return EXIT_USAGE
    return EXIT_OK


def _no_sinks(config: Config) -> dict[str, Sink]:
    placeholder: Sink = MemorySink()
    return dict.fromkeys([*config.sinks.events, config.sinks.consent_log], placeholder)


def _suppressed_args(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser)
    parser.add_argument("address", help="the e-mail address or telephone number")
    _channel_arguments(parser)
    parser.add_argument(
        "--add",
        action="store_true",
        help="suppress it (an opt-out received by mail or phone), recorded like a link's",
    )
    parser.set_defaults(func=_suppressed)


def _suppressed(args: argparse.Namespace) -> int:
    if normalize_address(args.address, args.channel) is None:
        # Not "not suppressed": a script must not take a typo for permission to call.
        err(f"consentmw: not a valid {args.channel} address")
        return EXIT_USAGE
    with _open(args) as rights:
        try:
            if args.add:
                new = rights.opt_out(args.address, args.channel, args.purpose)
                err("consentmw: suppressed" + ("" if new else " (it already was)"))
                return EXIT_OK
            suppressed = rights.is_suppressed(args.address, args.channel, args.purpose)
        except ValueError as exc:
            err(f"consentmw: {exc}")
            return EXIT_USAGE
    sys.stdout.write("suppressed\n" if suppressed else "not suppressed\n")
    return EXIT_OK if suppressed else EXIT_NO


# ---------------------------------------------------------------------------- receipts


def _receipts_args(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="receipts_command", required=True, metavar="verify|show|prune")
    verify = sub.add_parser("verify", help="walk the consent log's hash chain")
    add_config_argument(verify)
    verify.add_argument(
        "--expect",
        metavar="HASH",
        help="a hash printed by an earlier run: fail if the log no longer reaches it",
    )
    verify.set_defaults(func=_receipts_verify)
    prune = sub.add_parser(
        "prune", help="remove records older than rights.consent_retention_days from the start"
    )
    add_config_argument(prune)
    prune.set_defaults(func=_receipts_prune)
    show = sub.add_parser("show", help="a subject's consent decisions")
    add_config_argument(show)
    show.add_argument("subject", help="a consent id (receipt), visitor id or e-mail address")
    show.add_argument("--json", action="store_true", help="print JSON instead of a table")
    show.set_defaults(func=_receipts_show)


def _receipts_verify(args: argparse.Namespace) -> int:
    with _open(args) as rights:
        bar = Progress("verify")
        report = rights.verify_receipts(expect=args.expect, on_record=bar.step)
        bar.done()
    out = sys.stdout
    for found in report.breaks:
        out.write(
            f"BROKEN at record {found.position} ({found.record_id}): {found.kind}: {found.detail}\n"
        )
    if report.expected_found is False:
        out.write("BROKEN: the log no longer reaches the expected hash (records were cut)\n")
    state = "chain intact" if report.ok else "chain BROKEN"
    out.write(f"{report.records} record(s), {state}\n")
    if report.past_retention:
        out.write(f"{report.past_retention} record(s) older than rights.consent_retention_days\n")
    out.write(f"latest hash: {report.latest_hash}\n")
    return EXIT_OK if report.ok else EXIT_NO


def _receipts_prune(args: argparse.Namespace) -> int:
    with _open(args) as rights:
        result = rights.prune_receipts()
        days = rights.config.rights.consent_retention_days
    err(f"consentmw: removed {result.pruned} record(s) older than {days} days")
    if result.anchor is not None:
        sys.stdout.write(
            f"anchor: {result.anchor.hash} ({result.anchor.records} record(s) removed in all, "
            f"the last from {result.anchor.ts})\n"
        )
    return EXIT_OK


def _receipts_show(args: argparse.Namespace) -> int:
    with _open(args) as rights:
        rows = decision_rows(rights.receipts(args.subject))
    if args.json:
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
    elif rows:
        table = [
            [r["time"], r["policy_version"], ", ".join(r["purposes"]), r["mechanism"]] for r in rows
        ]
        sys.stdout.write(
            format_table(["time", "policy version", "purposes", "mechanism"], table) + "\n"
        )
    else:
        err("consentmw: no consent records for that subject")
    return EXIT_OK if rows else EXIT_NO


# ---------------------------------------------------------------------------- report


def _keys(value: str) -> tuple[str, ...]:
    keys = tuple(k.strip() for k in value.split(",") if k.strip())
    bad = [k for k in keys if k not in REPORT_KEYS]
    if not keys or bad:
        raise argparse.ArgumentTypeError(f"group by one or more of {', '.join(REPORT_KEYS)}")
    return keys


def _min_count(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError("--min-count must be a whole number of at least 1")
    return number


def _report_args(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser)
    parser.add_argument(
        "--by", type=_keys, default=("path",), metavar="KEYS",
        help=f"comma-separated grouping keys from {', '.join(REPORT_KEYS)} (default: path)",
    )  # fmt: skip
    parser.add_argument(
        "--type",
        default="page_visit",
        help="event type to count: page_visit (default), action, consent, identify, optout, or all",
    )
    parser.add_argument("--since", type=_time, help="from this date or time (inclusive)")
    parser.add_argument("--until", type=_time, help="up to this date or time (exclusive)")
    parser.add_argument(
        "--min-count", type=_min_count, default=DEFAULT_MIN_COUNT, metavar="N",
        help=f"hide cells counting fewer events (default: {DEFAULT_MIN_COUNT})",
    )  # fmt: skip
    parser.add_argument("--format", choices=FORMATS, default="table", help="default: table")
    parser.add_argument("-o", "--output", metavar="FILE", help="default: standard output")
    parser.set_defaults(func=_report)


def _report(args: argparse.Namespace) -> int:
    with _open(args) as rights:
        report = rights.report(
            by=args.by,
            type=None if args.type == "all" else args.type,
            since=args.since,
            until=args.until,
            min_count=args.min_count,
        )
    with _output(args.output) as fp:
        fp.write(report.render(args.format))
    return EXIT_OK


#: ``(name, help, add_arguments)`` for ``consentmw.cli``.
COMMANDS: list[tuple[str, str, AddArguments]] = [
    ("export", "write everything about a subject as one JSON document", _export_args),
    ("rectify", "correct a subject's e-mail address everywhere", _rectify_args),
    ("erase", "erase a subject from every sink, the spool and the queues", _erase_args),
    ("restrict", "keep a subject's data to the purposes it was collected for", _restrict_args),
    ("optout-link", "print a signed opt-out URL for an address", _optout_link_args),
    ("suppressed", "exit 0 if an address must not be contacted, 1 if it may", _suppressed_args),
    ("receipts", "proof of consent: receipts verify | show SUBJECT | prune", _receipts_args),
    ("report", "aggregate counts fit to share (small cells hidden)", _report_args),
]
