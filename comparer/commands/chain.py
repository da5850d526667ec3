"""`comparer chain`: the chain each target serves, and the path each store completes.

No stack probes the target here: the chain is read once with `openssl s_client
-showcerts`, which carries on after a verify error, and each stack's store is read to
build the path that stack would follow to a trust anchor.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
from collections.abc import Sequence
from datetime import timezone
from typing import Any

from rich.console import Console
from rich.text import Text
from rich.tree import Tree

from comparer import __version__
from comparer.analysis import fetch_chains, warn_days
from comparer.chain import (
    ChainContext,
    build_context,
    certificate_role,
    chain_json,
    common_name,
    describe_key,
    format_validity,
    read_trust_anchors,
    signature_name,
)
from comparer.chain_checks import (
    DEFAULT_WARN_DAYS,
    expiry_warnings,
    print_chain_notes,
    served_chain_findings,
)
from comparer.commands.check import (
    load_ca_file,
    positive_float,
    positive_int,
)
from comparer.console import make_console
from comparer.errors import EXIT_FAILED, EXIT_OK
from comparer.model import Target, TargetReport
from comparer.render import dump_json
from comparer.stacks import DEFAULT_STACKS, parse_stack_list
from comparer.stacks.base import ProbeSettings
from comparer.targets import parse_target
from comparer.whatif import parse_at


def register(subparsers: Any) -> None:
    """Add the `chain` subcommand."""
    parser = subparsers.add_parser(
        "chain",
        help="show the chain a target serves and each stack's path to a trust anchor",
        description="Read the certificates each target sends (openssl s_client "
        "-showcerts, which carries on after a verify error) and show them with the "
        "path that each stack's trust store completes to an anchor. This is a "
        "diagnostic read: `comparer check` gives each stack's verdict.",
        epilog="exit status: 0 every chain was read; 1 a chain could not be read; "
        "2 bad usage.",
    )
    parser.add_argument("targets", nargs="+", metavar="TARGET", help="endpoints")
    parser.add_argument(
        "--ca-file",
        metavar="PEM",
        help="build every path against exactly the certificates in this PEM bundle",
    )
    parser.add_argument(
        "--stacks",
        metavar="A,B",
        help="stacks whose stores to read, comma-separated "
        f"(default: {','.join(DEFAULT_STACKS)})",
    )
    parser.add_argument(
        "--timeout",
        type=positive_float,
        default=10.0,
        metavar="SECONDS",
        help="time limit for reading one chain, in seconds (default: 10)",
    )
    parser.add_argument(
        "--concurrency",
        type=positive_int,
        default=50,
        metavar="N",
        help="chains read at once (default: 50)",
    )
    parser.add_argument(
        "--warn-days",
        type=warn_days,
        default=DEFAULT_WARN_DAYS,
        metavar="DAYS",
        help="warn when a certificate expires within DAYS days "
        f"(default: {DEFAULT_WARN_DAYS})",
    )
    parser.add_argument(
        "--at",
        type=parse_at,
        metavar="DATE",
        help="judge validity and days left as of DATE (ISO date or date and time)",
    )
    parser.add_argument(
        "--json", action="store_true", help="print JSON on stdout, nothing else"
    )
    parser.set_defaults(run=run)


def collect_contexts(
    targets: Sequence[Target],
    *,
    stack_names: Sequence[str],
    settings: ProbeSettings,
    concurrency: int,
    at: dt.datetime,
) -> list[ChainContext]:
    """Read each target's chain and build every stack's path, in input order."""
    reports = [TargetReport(target=target) for target in targets]
    chains = asyncio.run(
        fetch_chains(reports, timeout=settings.timeout, concurrency=concurrency)
    )
    anchors = {name: read_trust_anchors(name, settings) for name in stack_names}
    return [
        build_context(target, chains[target.key], anchors, at=at) for target in targets
    ]


def analyse_context(context: ChainContext, *, warn_days: int) -> TargetReport:
    """Return a report with the chain, findings and expiry warnings of one target."""
    report = TargetReport(target=context.target)
    report.extra["chain"] = chain_json(context)
    report.findings = served_chain_findings(context)
    anchored = [stack for stack, path in context.paths.items() if path.complete]
    report.warnings = expiry_warnings(context, anchored, warn_days=warn_days)
    return report


def render_tree(console: Console, context: ChainContext) -> None:
    """Print one target's served chain and paths as a tree."""
    served = context.served
    count = len(served.certificates)
    title = Text(context.target.raw, style="bold")
    if served.error is not None:
        title.append(f": the chain could not be read ({served.error})", style="red")
        console.print(title)
        return
    title.append(f": {count} certificate{'s' if count != 1 else ''} served")
    tree = Tree(title)
    for position, entry in enumerate(served.certificates):
        certificate = entry.certificate
        role = certificate_role(entry, position)
        node = tree.add(Text(f"#{position} {role}: {entry.subject}", style="bold"))
        key_type, bits = describe_key(certificate)
        node.add(Text(f"issuer: {certificate.issuer.rfc4514_string()}"))
        node.add(Text(f"serial: {entry.serial:X}"))
        node.add(Text(f"sha256: {entry.fingerprint}"))
        node.add(
            Text(
                f"key: {key_type}, {bits or '?'} bits; signature: "
                f"{signature_name(certificate)}"
            )
        )
        node.add(Text(f"valid: {format_validity(certificate, context.at)}"))
    _add_paths(tree, context)
    console.print(tree)


def _add_paths(tree: Tree, context: ChainContext) -> None:
    branch = tree.add(Text("paths to a trust anchor", style="bold"))
    if not context.paths:
        branch.add(Text("no store of the selected stacks could be read"))
        return
    groups: dict[int, list[str]] = {}
    for stack, path in context.paths.items():
        groups.setdefault(id(path), []).append(stack)
    for stacks in groups.values():
        path = context.paths[stacks[0]]
        store = context.anchors[stacks[0]].source.describe()
        node = branch.add(Text(f"{', '.join(stacks)}: {store}"))
        steps = [
            f"#{context.position(entry)} {common_name(entry.certificate.subject)}"
            for entry in path.certificates
        ]
        if path.anchor is not None:
            anchor = path.anchor.certificate
            steps.append(
                f"anchor {common_name(anchor.subject)} "
                f"({format_validity(anchor, context.at).split(' (')[-1]}"
            )
            node.add(Text("✓ " + " → ".join(steps), style="green"))
        else:
            node.add(Text(f"✗ {' → '.join(steps)}: {path.problem}", style="red"))


def run(args: argparse.Namespace) -> int:
    """Run `comparer chain`."""
    ca_file = load_ca_file(args.ca_file)
    stack_names = parse_stack_list(args.stacks)
    targets = list({t.key: t for t in map(parse_target, args.targets)}.values())
    settings = ProbeSettings(ca_file=ca_file, timeout=args.timeout)
    at = args.at or dt.datetime.now(timezone.utc)
    contexts = collect_contexts(
        targets,
        stack_names=stack_names,
        settings=settings,
        concurrency=args.concurrency,
        at=at,
    )
    reports = [analyse_context(c, warn_days=args.warn_days) for c in contexts]
    if args.json:
        settings_json = {
            "ca_file": str(ca_file) if ca_file else None,
            "stacks": stack_names,
            "timeout": args.timeout,
            "warn_days": args.warn_days,
            "at": at.isoformat(),
        }
        print(dump_json(_document(reports, settings_json)))
    else:
        console = make_console()
        for context in contexts:
            render_tree(console, context)
        print_chain_notes(console, reports)
    unread = any(context.served.error is not None for context in contexts)
    return EXIT_FAILED if unread else EXIT_OK


def _document(
    reports: Sequence[TargetReport], settings: dict[str, Any]
) -> dict[str, Any]:
    return {
        "schema": 1,
        "comparer": __version__,
        "generated_at": dt.datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "settings": settings,
        "targets": [
            {
                "target": report.target.raw,
                "host": report.target.host,
                "port": report.target.port,
                "chain": report.extra["chain"],
                "findings": report.findings,
                "warnings": report.warnings,
            }
            for report in reports
        ],
    }
