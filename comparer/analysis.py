"""The analysis that `check` runs after probing: each target's served chain and
paths, expiry warnings, served-chain findings, explanations and `--at`.

The served chain is read with one `openssl s_client` per target, all at once under
--concurrency and --timeout. Targets that no stack could reach are not read again.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from comparer.chain import (
    ChainContext,
    ServedChain,
    TrustAnchors,
    build_context,
    chain_json,
    fetch_served_chain,
    read_trust_anchors,
)
from comparer.chain_checks import (
    DEFAULT_WARN_DAYS,
    expiry_warnings,
    served_chain_findings,
)
from comparer.errors import EXIT_FAILED, EXIT_OK
from comparer.explain import explain_report
from comparer.model import Reason, StackInfo, TargetReport
from comparer.runner import TIMEOUT_MARGIN
from comparer.stacks.base import ProbeSettings
from comparer.whatif import (
    OFFLINE,
    describe_evaluation,
    evaluate_at,
    evaluation_mode,
    parse_at,
    relabel_stacks,
)

log = logging.getLogger(__name__)

# Verdicts that mean no stack got as far as a certificate, so reading the chain
# would only wait for the same timeout again.
_UNREACHABLE = {Reason.TIMEOUT, Reason.CONNECT}


@dataclass(frozen=True)
class AnalysisOptions:
    """The options of the analysis: warning window, evaluation time, exit policy.

    `at` is None to judge the present.
    """

    warn_days: int = DEFAULT_WARN_DAYS
    at: dt.datetime | None = None
    fail_on_warnings: bool = False


class RunOutcome(Protocol):
    """The parts of a run's outcome that the analysis reads and updates."""

    reports: list[TargetReport]
    stacks: list[StackInfo]
    settings: dict[str, Any]
    interrupted: bool


def warn_days(text: str) -> int:
    """Parse --warn-days: a whole number of days from 0 to 3650."""
    if not text.isdigit() or int(text) > 3650:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a whole number of days from 0 to 3650"
        )
    return int(text)


def add_analysis_options(parser: argparse.ArgumentParser) -> None:
    """Add --warn-days, --fail-on-warnings and --at."""
    group = parser.add_argument_group("chain, expiry and time")
    group.add_argument(
        "--warn-days",
        type=warn_days,
        default=DEFAULT_WARN_DAYS,
        metavar="DAYS",
        help="warn when a certificate on the served chain or on a verified path "
        "(leaf, intermediate or root) expires within DAYS days "
        f"(default: {DEFAULT_WARN_DAYS})",
    )
    group.add_argument(
        "--fail-on-warnings",
        action="store_true",
        help="exit with status 1 when there is any warning; without it, warnings "
        "do not change the exit status",
    )
    group.add_argument(
        "--at",
        type=parse_at,
        metavar="DATE",
        help="give every verdict as of DATE (ISO date or date and time, UTC unless "
        "it has an offset): openssl with s_client -attime, the Python stacks "
        "offline with cryptography's verifier against their own stores; image "
        "stacks are not evaluated",
    )


def options_from_args(args: argparse.Namespace) -> AnalysisOptions:
    """Return the analysis options of a parsed command line."""
    return AnalysisOptions(
        warn_days=getattr(args, "warn_days", DEFAULT_WARN_DAYS),
        at=getattr(args, "at", None),
        fail_on_warnings=getattr(args, "fail_on_warnings", False),
    )


async def fetch_chains(
    reports: Sequence[TargetReport], *, timeout: float, concurrency: int
) -> dict[str, ServedChain]:
    """Read every target's served chain, `concurrency` at a time."""
    semaphore = asyncio.Semaphore(concurrency)

    async def one(report: TargetReport) -> tuple[str, ServedChain]:
        results = report.results
        if results and all(r.reason in _UNREACHABLE for r in results):
            return report.target.key, ServedChain(
                error="not read: no stack reached the server",
                reason=results[0].reason,
            )
        async with semaphore:
            served = await fetch_served_chain(
                report.target, timeout=timeout + TIMEOUT_MARGIN
            )
        return report.target.key, served

    return dict(await asyncio.gather(*(one(report) for report in reports)))


def analyse(
    outcome: RunOutcome,
    *,
    settings: ProbeSettings,
    concurrency: int,
    options: AnalysisOptions,
) -> None:
    """Add chain, warnings, findings and explanations to each probed target.

    Targets that already carry a `chain` (analysed by another process) are left as
    they are. With `options.at`, every verdict is first replaced by the verdict as
    of that time.
    """
    if outcome.interrupted:
        return
    reports = [r for r in outcome.reports if r.error is None and "chain" not in r.extra]
    outcome.settings["warn_days"] = options.warn_days
    if options.at is not None:
        outcome.settings["at"] = _at_settings(outcome.stacks, options.at)
    if not reports:
        return
    at = options.at or dt.datetime.now(dt.timezone.utc)
    host_stacks = [info.name for info in outcome.stacks if info.where == "host"]
    anchors = {name: read_trust_anchors(name, settings) for name in host_stacks}
    try:
        contexts = asyncio.run(
            _contexts(reports, anchors, settings, at=at, concurrency=concurrency)
        )
        if options.at is not None:
            asyncio.run(
                evaluate_at(
                    reports,
                    contexts,
                    settings=settings,
                    at=options.at,
                    concurrency=concurrency,
                )
            )
            outcome.stacks = relabel_stacks(outcome.stacks, options.at)
    except KeyboardInterrupt:
        outcome.interrupted = True
        return
    offline = _offline_columns(outcome.stacks, options.at)
    for report in reports:
        context = contexts[report.target.key]
        _annotate(report, context, outcome.stacks, offline, options)


async def _contexts(
    reports: Sequence[TargetReport],
    anchors: dict[str, TrustAnchors | None],
    settings: ProbeSettings,
    *,
    at: dt.datetime,
    concurrency: int,
) -> dict[str, ChainContext]:
    chains = await fetch_chains(
        reports, timeout=settings.timeout, concurrency=concurrency
    )

    def build_all() -> dict[str, ChainContext]:
        return {
            report.target.key: build_context(
                report.target, chains[report.target.key], anchors, at=at
            )
            for report in reports
        }

    # Path building verifies signatures, so it runs off the event loop.
    return await asyncio.to_thread(build_all)


def _annotate(
    report: TargetReport,
    context: ChainContext,
    stacks: Sequence[StackInfo],
    offline: dict[str, str],
    options: AnalysisOptions,
) -> None:
    report.extra["chain"] = chain_json(context)
    report.findings = served_chain_findings(context)
    verified = [r.stack for r in report.results if r.ok and r.where == "host"]
    report.warnings = expiry_warnings(context, verified, warn_days=options.warn_days)
    report.explanations = explain_report(
        report, context=context, stacks=stacks, offline=offline
    )


def _offline_columns(
    stacks: Sequence[StackInfo], at: dt.datetime | None
) -> dict[str, str]:
    if at is None:
        return {}
    return {
        info.column: describe_evaluation(OFFLINE, at)
        for info in stacks
        if evaluation_mode(info.name, info.where) == OFFLINE
    }


def _at_settings(stacks: Sequence[StackInfo], at: dt.datetime) -> dict[str, Any]:
    evaluation = {
        info.column: describe_evaluation(evaluation_mode(info.name, info.where), at)
        for info in stacks
    }
    return {"time": at.isoformat(), "evaluation": evaluation}


def warning_exit_status(
    status: int, reports: Sequence[TargetReport], options: AnalysisOptions
) -> int:
    """Return 1 instead of 0 when --fail-on-warnings is set and a warning exists."""
    has_warnings = any(report.warnings for report in reports)
    if status == EXIT_OK and options.fail_on_warnings and has_warnings:
        return EXIT_FAILED
    return status
