"""`--at DATE`: each stack's verdict as of another time, with what each stack offers.

`openssl s_client -attime` verifies a live handshake as of that time. The Python
stacks have no such option, so their verdict is cryptography's verifier run offline
at that time on the served chain, against the stack's own store. An image's stack
cannot be evaluated, because its store is not read from the host.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime as dt
import re
import shlex
import shutil
import time
from collections.abc import Mapping, Sequence

import cryptography

from comparer.chain import ChainContext, run_command
from comparer.model import ProbeResult, Reason, StackInfo, Target, TargetReport
from comparer.stacks.base import ProbeSettings, elapsed_ms
from comparer.stacks.cryptography_stack import (
    Verdict,
    certificates_of,
    verify_with_cryptography,
)
from comparer.stacks.openssl_cli import build_argv, classify_output

LIVE = "s_client -attime"
_VERIFY_OK = re.compile(r"^Verify return code: 0 ", re.MULTILINE)
OFFLINE = "offline"
NOT_EVALUATED = "not evaluated"


def parse_at(text: str) -> dt.datetime:
    """Parse --at: an ISO date or date and time, read as UTC without an offset."""
    value = text.strip()
    if value[-1:] in {"Z", "z"}:
        value = value[:-1] + "+00:00"
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an ISO date or date and time; use a form such as "
            "2027-01-31 or 2027-01-31T12:00:00Z"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    moment = moment.astimezone(dt.timezone.utc)
    # s_client -attime takes whole seconds since 1970.
    if moment.year < 1970 or moment.year > 9998:
        raise argparse.ArgumentTypeError(
            f"{text!r} is outside 1970 to 9998; give a date in that range"
        )
    return moment


def evaluation_mode(stack: str, where: str) -> str:
    """Return how a column is evaluated as of another time: LIVE, OFFLINE or
    NOT_EVALUATED."""
    if where != "host":
        return NOT_EVALUATED
    return LIVE if stack == "openssl" else OFFLINE


def describe_evaluation(mode: str, at: dt.datetime) -> str:
    """Return the label that the table and JSON show for a column's evaluation."""
    date = at.isoformat(timespec="seconds")
    if mode == LIVE:
        return f"as of {date} with openssl s_client -attime"
    if mode == OFFLINE:
        return (
            f"as of {date}, offline with cryptography {cryptography.__version__}'s "
            "verifier against this stack's own store"
        )
    return f"not evaluated as of {date}: the image's store is not read from the host"


def relabel_stacks(stacks: Sequence[StackInfo], at: dt.datetime) -> list[StackInfo]:
    """Return the stack columns with how each was evaluated in version and facts."""
    relabelled = []
    for info in stacks:
        mode = evaluation_mode(info.name, info.where)
        label = describe_evaluation(mode, at)
        relabelled.append(
            dataclasses.replace(
                info,
                version=f"{info.version or '?'}; {label}",
                facts={**info.facts, "as_of": at.isoformat(), "evaluation": mode},
            )
        )
    return relabelled


def openssl_at_argv(
    binary: str, target: Target, settings: ProbeSettings, at: dt.datetime
) -> list[str]:
    """Return the openssl stack's own s_client arguments, verifying as of `at`.

    -ign_eof is dropped because no request is sent: with stdin closed, s_client
    then ends right after the handshake.
    """
    argv = [arg for arg in build_argv(binary, target, settings) if arg != "-ign_eof"]
    return [*argv, "-attime", str(int(at.timestamp()))]


async def openssl_at(
    result: ProbeResult, target: Target, settings: ProbeSettings, at: dt.datetime
) -> ProbeResult:
    """Verify the target with s_client as of `at`; stdin is closed, so s_client
    ends after the handshake."""
    start = time.perf_counter()
    binary = shutil.which("openssl")
    if binary is None:
        return _replace(result, Reason.UNAVAILABLE, "openssl not found on PATH")
    argv = openssl_at_argv(binary, target, settings, at)
    try:
        out, err, _ = await run_command(argv, timeout=settings.timeout)
    except asyncio.TimeoutError:
        detail = f"no verdict within {settings.timeout:g} s"
        return _replace(result, Reason.TIMEOUT, detail)
    reason, code, detail = classify_output(out, err)
    verified = _VERIFY_OK.search(out)
    if verified is not None and reason is not Reason.OK:
        # s_client prints "Verify return code: 0" once the chain and name verified.
        # With stdin closed it may exit before the -state line that marks the end
        # of the handshake, so classify_output can miss a verified handshake.
        reason, code, detail = Reason.OK, 0, ""
    return dataclasses.replace(
        result,
        ok=reason is Reason.OK,
        reason=reason,
        detail="" if reason is Reason.OK else detail,
        verify_code=code,
        elapsed_ms=elapsed_ms(start),
        reproduce=shlex.join(["openssl", *argv[1:]]) + " </dev/null",
        note=None,
    )


def offline_at(
    result: ProbeResult, context: ChainContext, at: dt.datetime
) -> ProbeResult:
    """Judge the served chain with cryptography's verifier against the stack's store.

    cryptography's rules are stricter than a stack's on some certificates (no AKI, a
    CN without SAN). When they disagree about the target today, only a change between
    today and `at` counts. If cryptography's verdict does not change, the stack's own
    verdict of today is kept, with a note.
    """
    start = time.perf_counter()
    served = context.served
    if served.error is not None:
        # A server that cannot be reached stays unreachable; anything else only
        # keeps the chain from being judged.
        reason = served.reason or Reason.UNAVAILABLE
        if reason not in {Reason.TIMEOUT, Reason.CONNECT}:
            reason = Reason.UNAVAILABLE
        detail = f"could not read the served chain: {served.error}"
        return _replace(result, reason, detail)
    anchors = context.anchors.get(result.stack)
    if anchors is None or anchors.store is None:
        why = anchors.error if anchors is not None else "unknown store"
        return _replace(result, Reason.UNAVAILABLE, f"cannot read the store: {why}")
    chain = certificates_of(served.certificates)
    roots = anchors.certificates()
    verdict = verify_with_cryptography(chain, roots, context.target, at=at)
    note = None
    if result.stack != "cryptography":
        today = verify_with_cryptography(chain, roots, context.target)
        if not _same_verdict(today, result):
            differ = (
                f"cryptography's rules differ from {result.stack}'s on this target: "
                f"today {result.stack} says {result.reason.value} and cryptography "
                f"says {today.reason.value}"
            )
            if verdict.reason is today.reason:
                unchanged = (
                    f"{differ}; the date changes nothing, so today's verdict is kept"
                )
                return dataclasses.replace(result, reproduce=None, note=unchanged)
            note = differ
    return dataclasses.replace(
        result,
        ok=verdict.reason is Reason.OK,
        reason=verdict.reason,
        detail=verdict.detail,
        verify_code=None,
        tls_version=None,
        elapsed_ms=elapsed_ms(start),
        reproduce=None,
        note=note,
    )


def _same_verdict(verdict: Verdict, result: ProbeResult) -> bool:
    return verdict.reason is result.reason


def _replace(result: ProbeResult, reason: Reason, detail: str) -> ProbeResult:
    return dataclasses.replace(
        result,
        ok=False,
        reason=reason,
        detail=detail,
        verify_code=None,
        tls_version=None,
        reproduce=None,
        note=None,
    )


async def evaluate_at(
    reports: Sequence[TargetReport],
    contexts: Mapping[str, ChainContext],
    *,
    settings: ProbeSettings,
    at: dt.datetime,
    concurrency: int,
) -> None:
    """Replace every result with the verdict as of `at`, in place."""
    semaphore = asyncio.Semaphore(concurrency)

    async def one(report: TargetReport, index: int) -> None:
        result = report.results[index]
        context = contexts.get(report.target.key)
        mode = evaluation_mode(result.stack, result.where)
        if mode == LIVE:
            async with semaphore:
                new = await openssl_at(result, report.target, settings, at)
        elif mode == OFFLINE and context is not None:
            new = await asyncio.to_thread(offline_at, result, context, at)
        else:
            why = describe_evaluation(NOT_EVALUATED, at)
            if mode == OFFLINE:
                why = "the served chain was not read"
            new = _replace(result, Reason.UNAVAILABLE, why)
        report.results[index] = new

    await asyncio.gather(
        *(one(report, i) for report in reports for i in range(len(report.results)))
    )
