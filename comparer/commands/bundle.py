"""`comparer bundle`: audit CA bundles and certificate files, or compare two stores."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from comparer.bundle import (
    JSON_SCHEMA,
    BundleReport,
    StoreDiff,
    StoreEntry,
    audit,
    describe_not_after,
    diff_stores,
)
from comparer.bundle_model import Finding, Severity
from comparer.bundle_server import TrustStore
from comparer.bundle_sources import (
    STACK_NAMES,
    ImageOptions,
    LoadedSource,
    load_file,
    load_image,
    load_spec,
    load_stack,
)
from comparer.console import make_console
from comparer.errors import EXIT_FAILED, EXIT_OK, UsageError

DEFAULT_TRUST = "stdlib"
DEFAULT_IMAGE_TIMEOUT = 120.0

DESCRIPTION = """\
Audit CA bundles and certificate files: PEM or DER files, bundles, HAProxy-style
files with a private key and chain, OpenSSL hashed directories and certifi wheels.
A file with a private key (or any file with --server) is checked as a server's
certificate file: the key matches the leaf, the chain is in order and reaches a
root in the --trust store.
"""

EPILOG = """\
STORE is a file or directory, a stack name (openssl, stdlib, requests, httpx,
aiohttp), or image:REF. A stack name wins over a file of that name; write
./openssl for the file.

exit status:
  0  no finding is an error (with --diff: the stores hold the same certificates)
  1  a finding is an error, such as an expired or unparsable certificate or a key
     that does not match (with --diff: the stores differ)
  2  bad usage or unreadable input
"""

_SEVERITY_STYLE = {
    Severity.ERROR: "bold red",
    Severity.WARNING: "yellow",
    Severity.INFO: "cyan",
}


def register(subparsers: Any) -> None:
    """Add the `bundle` subcommand to the top-level parser."""
    parser = subparsers.add_parser(
        "bundle",
        help="audit CA bundles and certificate files",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_input_arguments(parser)
    _add_check_arguments(parser)
    _add_output_arguments(parser)
    _add_image_arguments(parser)
    parser.set_defaults(run=run)


def _add_input_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "files",
        nargs="*",
        metavar="FILE",
        help="PEM or DER file, bundle, server file, hashed directory or certifi wheel",
    )
    parser.add_argument(
        "--stack",
        action="append",
        default=[],
        choices=STACK_NAMES,
        metavar="NAME",
        help="audit the store that a host stack uses by default "
        f"({', '.join(STACK_NAMES)}); repeatable",
    )
    parser.add_argument(
        "--image",
        action="append",
        default=[],
        metavar="IMAGE",
        help="audit the default CA bundle inside a container image; repeatable",
    )
    parser.add_argument(
        "--diff",
        nargs=2,
        metavar=("A", "B"),
        help="list the roots in one STORE and not the other, instead of auditing",
    )


def _add_check_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--server",
        action="store_true",
        help="check FILEs as server certificate files even without a private key",
    )
    parser.add_argument(
        "--trust",
        default=DEFAULT_TRUST,
        metavar="STORE",
        help="store that a server file's chain must reach (default: %(default)s)",
    )
    parser.add_argument(
        "--warn-days",
        type=_non_negative_int,
        default=30,
        metavar="DAYS",
        help="warn about certificates that expire within DAYS days (default: "
        "%(default)s)",
    )
    parser.add_argument(
        "--at",
        type=_parse_time,
        metavar="TIME",
        help="check validity at this ISO 8601 date or time, in UTC unless it has "
        "an offset (default: now)",
    )


def _add_output_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--info", action="store_true", help="list info findings in the table too"
    )
    parser.add_argument(
        "--json", action="store_true", help="print JSON on stdout instead of a table"
    )


def _add_image_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--engine",
        metavar="NAME",
        help="container engine for --image and image:REF (default: docker, then "
        "podman)",
    )
    parser.add_argument(
        "--pull",
        choices=("never", "missing", "always"),
        default="missing",
        help="when the engine pulls an image (default: %(default)s)",
    )
    parser.add_argument(
        "--timeout",
        type=_positive_float,
        default=DEFAULT_IMAGE_TIMEOUT,
        metavar="SECONDS",
        help="time limit for reading one image's bundle (default: %(default)g)",
    )


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is negative; pass 0 or more")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not positive; pass seconds")
    return value


def _parse_time(text: str) -> dt.datetime:
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an ISO 8601 date or time, such as 2027-01-31"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    return moment


def run(args: argparse.Namespace) -> int:
    """Run the audit or the comparison and return the exit status."""
    now: dt.datetime = args.at or dt.datetime.now(dt.timezone.utc)
    console = make_console()
    if args.diff is not None:
        if args.files or args.stack or args.image:
            raise UsageError(
                "--diff compares two stores and takes no FILE, --stack or --image; "
                "run them separately"
            )
        return _run_diff(args, console, now)

    sources = _load_sources(args)
    if not sources:
        raise UsageError(
            "nothing to audit; pass FILE, --stack NAME, --image IMAGE or --diff A B"
        )
    store = _load_store(args) if _needs_store(args, sources) else None
    reports = [
        audit(
            source,
            now=now,
            warn_days=args.warn_days,
            server=args.server,
            store=store,
        )
        for source in sources
    ]
    if args.json:
        print(json.dumps(_audit_json(reports, now, args.warn_days), indent=2))
    else:
        for report in reports:
            render_report(console, report, show_info=args.info)
    failed = any(report.has_errors for report in reports)
    return EXIT_FAILED if failed else EXIT_OK


def _load_sources(args: argparse.Namespace) -> list[LoadedSource]:
    sources = [
        LoadedSource(label=path, path=path, parsed=load_file(path))
        for path in args.files
    ]
    sources += [load_stack(name) for name in args.stack]
    sources += [load_image(image, _image_options(args)) for image in args.image]
    return sources


def _image_options(args: argparse.Namespace) -> ImageOptions:
    return ImageOptions(engine=args.engine, pull=args.pull, timeout=args.timeout)


def _needs_store(args: argparse.Namespace, sources: list[LoadedSource]) -> bool:
    return any(
        (args.server or source.parsed.keys) and source.label in args.files
        for source in sources
    )


def _load_store(args: argparse.Namespace) -> TrustStore:
    loaded = load_spec(args.trust, _image_options(args))
    if not loaded.parsed.certificates:
        raise UsageError(
            f"--trust {args.trust}: no certificate could be read; pass a CA bundle, "
            "a hashed directory or a stack name"
        )
    label = loaded.label
    if loaded.path is not None and loaded.path != loaded.label:
        label = f"{loaded.label} ({loaded.path})"
    return TrustStore(label=label, entries=loaded.parsed.certificates)


def _audit_json(
    reports: list[BundleReport], now: dt.datetime, warn_days: int
) -> dict[str, Any]:
    totals = {severity.value: 0 for severity in Severity}
    for report in reports:
        for severity, count in report.counts().items():
            totals[severity] += count
    return {
        "schema": JSON_SCHEMA,
        "command": "bundle",
        "at": now.isoformat(),
        "warn_days": warn_days,
        "counts": totals,
        "reports": [report.to_json() for report in reports],
    }


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _heading(report: BundleReport) -> Text:
    counts = report.counts()
    kind = "server file" if report.kind == "server" else "trust bundle"
    text = Text()
    text.append(report.source, style="bold")
    text.append(f": {kind}, {_plural(report.certificates, 'certificate')}; ")
    text.append(
        _plural(counts["error"], "error"), style=_SEVERITY_STYLE[Severity.ERROR]
    )
    text.append(", ")
    text.append(
        _plural(counts["warning"], "warning"), style=_SEVERITY_STYLE[Severity.WARNING]
    )
    text.append(f", {counts['info']} info")
    return text


def _where(finding: Finding, report: BundleReport) -> str:
    if finding.file is None:
        return ""
    if finding.file in (report.path, report.source) or finding.file.startswith(
        (f"{report.path}!", f"{report.source}:")
    ):
        return "" if finding.line is None else f"line {finding.line}"
    name = os.path.basename(finding.file)
    return name if finding.line is None else f"{name}:{finding.line}"


def _finding_cell(finding: Finding) -> Text:
    cell = Text(f"{finding.code}: {finding.message}")
    if finding.subject is not None:
        cell.append(f"\n{finding.subject}", style="bold")
    if finding.fingerprint is not None:
        cell.append(f"\nsha256 {finding.fingerprint}", style="dim")
    return cell


def render_report(console: Console, report: BundleReport, *, show_info: bool) -> None:
    """Print one report: a heading line and a table of its findings."""
    console.print(_heading(report))
    if report.description is not None:
        console.print(f"  store: {report.description}")
    if report.trust is not None:
        console.print(f"  chain checked against: {report.trust}")
    listed = [
        f for f in report.findings if show_info or f.severity is not Severity.INFO
    ]
    if listed:
        table = Table(show_lines=True)
        table.add_column("severity", no_wrap=True)
        table.add_column("where", no_wrap=True)
        table.add_column("finding", overflow="fold")
        for finding in listed:
            table.add_row(
                Text(finding.severity.value, style=_SEVERITY_STYLE[finding.severity]),
                _where(finding, report),
                _finding_cell(finding),
            )
        console.print(table)
    hidden = len(report.findings) - len(listed)
    if hidden:
        console.print(f"  {_plural(hidden, 'info finding')} not shown; add --info")
    console.print()


def _run_diff(args: argparse.Namespace, console: Console, now: dt.datetime) -> int:
    a_spec, b_spec = args.diff
    a = load_spec(a_spec, _image_options(args))
    b = load_spec(b_spec, _image_options(args))
    for loaded in (a, b):
        if not loaded.parsed.certificates:
            raise UsageError(
                f"--diff {loaded.label}: no certificate could be read; pass a CA "
                "bundle, a hashed directory or a stack name"
            )
    diff = diff_stores(a, b)
    if args.json:
        data = {"schema": JSON_SCHEMA, "command": "bundle-diff", "at": now.isoformat()}
        data.update(diff.to_json())
        print(json.dumps(data, indent=2))
    else:
        render_diff(console, diff, now=now)
    return EXIT_OK if diff.identical else EXIT_FAILED


def _entry_table(title: str, entries: list[StoreEntry], now: dt.datetime) -> Table:
    table = Table(title=title, title_justify="left", show_lines=True)
    table.add_column("root", overflow="fold")
    table.add_column("not after", no_wrap=True)
    for entry in entries:
        cell = Text(entry.subject)
        cell.append(f"\nsha256 {entry.fingerprint}", style="dim")
        table.add_row(cell, describe_not_after(entry, now))
    return table


def render_diff(console: Console, diff: StoreDiff, *, now: dt.datetime) -> None:
    """Print the roots that only one store holds, and roots re-issued between them."""
    console.print(
        Text.assemble(
            (diff.a, "bold"),
            f" ({_plural(diff.a_count, 'certificate')}) vs ",
            (diff.b, "bold"),
            f" ({_plural(diff.b_count, 'certificate')}): {diff.common} in both",
        )
    )
    if diff.identical:
        console.print("  the stores hold the same certificates")
        return
    if diff.only_in_a:
        console.print(_entry_table(f"only in {diff.a}", diff.only_in_a, now))
    if diff.only_in_b:
        console.print(_entry_table(f"only in {diff.b}", diff.only_in_b, now))
    if diff.changed:
        table = Table(
            title="same subject and key, different certificate",
            title_justify="left",
            show_lines=True,
        )
        table.add_column("root", overflow="fold")
        table.add_column(f"not after in {diff.a}", no_wrap=True)
        table.add_column(f"not after in {diff.b}", no_wrap=True)
        for left, right in diff.changed:
            table.add_row(
                left.subject,
                describe_not_after(left, now),
                describe_not_after(right, now),
            )
        console.print(table)
