"""Render a run as a rich table, or as JSON."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from comparer import __version__
from comparer.chain_checks import print_chain_notes
from comparer.model import INCONCLUSIVE, ProbeResult, StackInfo, TargetReport

SCHEMA_VERSION = 1


def order_reports(reports: Sequence[TargetReport]) -> list[TargetReport]:
    """Put input errors first, then disagreements, then the rest in input order.

    The rows of one name's addresses stay together, ranked by their most urgent row.
    """

    def rank(report: TargetReport) -> int:
        if report.error is not None:
            return 0
        differs = report.extra.get("backend_differs", False)
        return 1 if not report.agree or differs else 2

    def group(report: TargetReport) -> str:
        return str(report.extra.get("address_group") or report.target.key)

    ranks: dict[str, int] = {}
    for report in reports:
        ranks[group(report)] = min(ranks.get(group(report), 2), rank(report))
    return sorted(reports, key=lambda report: ranks[group(report)])


def _cell(result: ProbeResult | None) -> Text:
    if result is None:
        return Text("·", style="dim")
    if result.ok:
        text = Text("✓ ok", style="green")
        if result.note:
            text.append(" *", style="yellow")
        return text
    if result.reason in INCONCLUSIVE:
        return Text(f"? {result.reason.value}", style="yellow")
    return Text(f"✗ {result.reason.value}", style="red")


def _by_column(report: TargetReport) -> dict[str, ProbeResult]:
    return {result.column: result for result in report.results}


def _column_header(info: StackInfo, *, show_where: bool, compact: bool) -> Text:
    if not show_where or info.where == "host":
        return Text(info.name)
    image = info.where.removeprefix("image:")
    if compact:
        # The last path part of the image name; the full facts follow the table.
        return Text(info.name) + Text(f"\n{image.rsplit('/', 1)[-1]}", style="dim")
    details = f"\n{image}\n{_short_version(info.version)}"
    return Text(info.name) + Text(details, style="dim")


def _short_version(version: str | None) -> str:
    """Return the library name and number of a version line, e.g. `OpenSSL 3.5.9`."""
    words = (version or "").split()
    return " ".join(words[:2]) if words[:1] == ["OpenSSL"] else " ".join(words[:1])


def image_facts_line(where: str, facts: dict[str, Any]) -> str:
    """Summarise one image's facts: OS, OpenSSL, Pythons, certifi and its CA bundle."""
    parts = []
    os_release = facts.get("os") or {}
    if isinstance(os_release, dict) and os_release.get("pretty_name"):
        parts.append(str(os_release["pretty_name"]))
    if facts.get("openssl_cli"):
        parts.append(_short_version(str(facts["openssl_cli"])))
    modules = facts.get("modules") or {}
    for module in ("certifi", "requests", "urllib3", "httpx", "aiohttp"):
        if isinstance(modules, dict) and modules.get(module):
            parts.append(f"{module} {modules[module]}")
    bundle = facts.get("default_bundle") or {}
    if isinstance(bundle, dict) and bundle.get("path"):
        parts.append(
            f"CA bundle {bundle['path']} ({bundle.get('certificates', '?')} roots, "
            f"earliest notAfter {bundle.get('earliest_not_after', '?')})"
        )
    package = facts.get("ca_certificates") or {}
    if isinstance(package, dict) and package.get("version"):
        parts.append(f"ca-certificates {package['version']}")
    return f"{where}: " + "; ".join(parts)


def disagreement_line(report: TargetReport, stacks: Sequence[StackInfo]) -> str:
    """Summarise who accepts and who rejects a target, in one line."""
    names = {info.column: _short_name(info) for info in stacks}
    accepted = [names.get(r.column, r.stack) for r in report.results if r.ok]
    rejected = [
        f"{names.get(r.column, r.stack)} ({r.reason.value})"
        for r in report.results
        if not r.ok and r.reason not in INCONCLUSIVE
    ]
    # A timeout or a failed connection gives no verdict on the certificate.
    no_verdict = [
        f"{names.get(r.column, r.stack)} ({r.reason.value})"
        for r in report.results
        if not r.ok and r.reason in INCONCLUSIVE
    ]
    parts = []
    if rejected:
        parts.append(f"{', '.join(rejected)} reject")
    if no_verdict:
        parts.append(f"{', '.join(no_verdict)} reached no verdict")
    if accepted:
        parts.append(f"{', '.join(accepted)} accept")
    return f"{_target_name(report)}: " + "; ".join(parts)


def _short_name(info: StackInfo) -> str:
    if info.where == "host":
        return info.name
    return f"{info.name}@{info.where.removeprefix('image:')}"


def _target_name(report: TargetReport) -> str:
    if report.label:
        return f"{report.target.raw} [{report.label}]"
    return report.target.raw


def summary_counts(reports: Sequence[TargetReport]) -> dict[str, int]:
    """Count targets, disagreements, targets every stack rejected, and input errors."""
    probed = [r for r in reports if r.error is None]
    return {
        "targets": len(reports),
        "disagreements": sum(1 for r in probed if not r.agree),
        "all_failed": sum(1 for r in probed if r.all_failed),
        "all_ok": sum(1 for r in probed if r.all_ok),
        "invalid": sum(1 for r in reports if r.error is not None),
    }


def render_table(
    console: Console,
    reports: Sequence[TargetReport],
    stacks: Sequence[StackInfo],
    *,
    interrupted: bool = False,
) -> None:
    """Print the comparison table, the disagreement lines and the summary."""
    show_where = any(info.where != "host" for info in stacks)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        # A file or pipe has no width of its own: make room for every column.
        console.width = max(console.width, 24 + 22 * len(stacks))
    # Below about 20 columns per stack the borders go, so that a narrow terminal
    # (80 columns, five stacks) still shows every column, with verdicts wrapped.
    narrow = console.width < 30 + 20 * len(stacks)
    table = Table(
        show_lines=False,
        header_style="bold",
        box=box.SIMPLE_HEAD if narrow else box.HEAVY_HEAD,
        pad_edge=not narrow,
    )
    # rich would drop or cut columns rather than shrink them, so a narrow table gets
    # explicit widths: the marker, a 16-column target, two spaces between columns.
    target_width = 16
    spare = console.width - 4 - target_width - 2 * (len(stacks) + 2)
    stack_width = max(6, spare // max(1, len(stacks)))
    table.add_column("", width=1, no_wrap=True)
    table.add_column(
        "target",
        overflow="fold",
        min_width=target_width,
        max_width=36,
        width=target_width if narrow else None,
    )
    for info in stacks:
        table.add_column(
            _column_header(info, show_where=show_where, compact=narrow),
            overflow="fold",
            min_width=6,
            width=stack_width if narrow else None,
        )

    ordered = order_reports(reports)
    for report in ordered:
        marker = Text("≠", style="bold yellow") if not report.agree else Text("")
        name = Text(report.target.raw)
        if report.label:
            name = Text(report.label, style="bold") + Text(f" {report.target.raw}")
        if report.error is not None:
            cells = [Text(f"✗ invalid: {report.error}", style="red")]
            cells += [Text("")] * (len(stacks) - 1)
            table.add_row(Text("!", style="bold red"), name, *cells[: len(stacks)])
            continue
        by_column = _by_column(report)
        table.add_row(marker, name, *(_cell(by_column.get(i.column)) for i in stacks))
    console.print(table)

    for report in ordered:
        if report.error is None and not report.agree:
            console.print(
                Text("≠ ", style="bold yellow") + disagreement_line(report, stacks)
            )
            for item in report.explanations:
                console.print(
                    f"  {item.get('text', '')}", highlight=False, markup=False
                )
    print_chain_notes(console, ordered)
    _print_notes(console, ordered)
    _print_environment_rows(console, ordered)
    _print_stacks(console, stacks)

    counts = summary_counts(reports)
    summary = (
        f"{_plural(counts['targets'], 'target')}, "
        f"{_plural(counts['disagreements'], 'disagreement')}, "
        f"{counts['all_failed']} failed in every stack, "
        f"{counts['all_ok']} verified by every stack"
    )
    if counts["invalid"]:
        summary += f", {counts['invalid']} invalid"
    if interrupted:
        summary += " (interrupted: partial results)"
    console.print(summary, style="bold", highlight=False)


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _print_environment_rows(console: Console, reports: Sequence[TargetReport]) -> None:
    """Name the environment and trust of rows probed apart from the stack list below."""
    for report in reports:
        environment = report.extra.get("environment")
        if not environment:
            continue
        settings = ", ".join(
            f"{name}={value}" if value else f"{name} unset"
            for name, value in environment.items()
        )
        trust: dict[str, list[str]] = {}
        for result in report.results:
            trust.setdefault(result.trust or "?", []).append(result.stack)
        used = "; ".join(
            f"{', '.join(names)}: {source}" for source, names in trust.items()
        )
        console.print(
            f"{_target_name(report)} was probed with {settings}. Trust used: {used}",
            style="dim",
            highlight=False,
            markup=False,
        )


def _print_notes(console: Console, reports: Sequence[TargetReport]) -> None:
    notes = [
        f"* {report.target.raw} {result.stack}: {result.note}"
        for report in reports
        for result in report.results
        if result.ok and result.note
    ]
    for note in notes[:20]:
        console.print(note, style="yellow", highlight=False, markup=False)
    if len(notes) > 20:
        console.print(
            f"* … and {len(notes) - 20} more notes (see --json)", style="yellow"
        )


def _print_stacks(console: Console, stacks: Sequence[StackInfo]) -> None:
    images_seen: set[str] = set()
    for info in stacks:
        if info.where != "host" and info.facts and info.where not in images_seen:
            images_seen.add(info.where)
            console.print(
                image_facts_line(info.where, info.facts), highlight=False, markup=False
            )
        where = "" if info.where == "host" else f" in {info.where}"
        console.print(
            Text(info.name, style="bold")
            + f"{where}: {info.version or '?'}; trust: {info.trust or '?'}",
            style="dim",
            highlight=False,
        )


def build_json(
    reports: Sequence[TargetReport],
    stacks: Sequence[StackInfo],
    *,
    settings: dict[str, Any],
    interrupted: bool = False,
) -> dict[str, Any]:
    """Return the JSON document for a run (schema 1)."""
    return {
        "schema": SCHEMA_VERSION,
        "comparer": __version__,
        "generated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "settings": settings,
        "interrupted": interrupted,
        "stacks": [info.to_json() for info in stacks],
        "targets": [report.to_json() for report in reports],
        "summary": summary_counts(reports),
    }


def dump_json(document: dict[str, Any]) -> str:
    """Serialise a JSON document with stable formatting."""
    return json.dumps(document, indent=2, ensure_ascii=False)
