"""Run every target x stack probe concurrently, each bounded by its own timeout."""

from __future__ import annotations

import asyncio
import logging
import os
import resource
import shlex
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace

from comparer.model import ProbeResult, Reason, Target, TargetReport
from comparer.reasons import describe_exception
from comparer.stacks.base import ProbeSettings, Stack
from comparer.trust import STACK_TRUST_VARIABLES

log = logging.getLogger(__name__)

# A probe that overruns its own timeout is cancelled this much later, so a client's
# own timeout error wins when it has one.
TIMEOUT_MARGIN = 0.5
# File descriptors one probe can hold at once: a socket, or a child's three pipes.
FDS_PER_PROBE = 4
FDS_RESERVED = 64


@dataclass
class RunState:
    """Results collected so far; still valid when the run is interrupted."""

    reports: dict[str, TargetReport] = field(default_factory=dict)
    done: int = 0
    total: int = 0

    def add(self, target: Target, result: ProbeResult) -> None:
        """Record one result under its target."""
        report = self.reports.setdefault(target.key, TargetReport(target=target))
        report.results.append(result)
        self.done += 1


def raise_fd_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit and return the soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    limit = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
    if soft != resource.RLIM_INFINITY and soft < limit:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))
            soft = limit
        except (ValueError, OSError):
            log.debug("could not raise RLIMIT_NOFILE from %d", soft)
    return int(soft) if soft != resource.RLIM_INFINITY else 1 << 20


def bounded_concurrency(requested: int) -> int:
    """Return the concurrency that the open-file limit allows, at most `requested`."""
    soft = raise_fd_limit()
    allowed = max(1, (soft - FDS_RESERVED) // FDS_PER_PROBE)
    if requested > allowed:
        log.warning(
            "lowering --concurrency from %d to %d: the open-file limit is %d",
            requested,
            allowed,
            soft,
        )
        return allowed
    return requested


async def probe_once(
    stack: Stack, target: Target, settings: ProbeSettings
) -> ProbeResult:
    """Run one probe, turning a hang or a crash into a result for that cell only."""
    start = time.perf_counter()
    try:
        result = await asyncio.wait_for(
            stack.probe(target, settings), settings.timeout + TIMEOUT_MARGIN
        )
    except asyncio.TimeoutError:
        reason, detail = Reason.TIMEOUT, f"no verdict within {settings.timeout:g} s"
    except Exception as exc:  # noqa: BLE001 - a crashing stack costs only its cell
        log.debug("stack %s crashed on %s", stack.name, target.raw, exc_info=True)
        reason, detail = Reason.ERROR, f"probe crashed: {describe_exception(exc)}"
    else:
        return with_environment(result, settings)
    return ProbeResult(
        stack=stack.name,
        ok=False,
        reason=reason,
        detail=detail,
        elapsed_ms=(time.perf_counter() - start) * 1000,
        address=target.address,
    )


def with_environment(result: ProbeResult, settings: ProbeSettings) -> ProbeResult:
    """Prefix the reproduce line with the variables that chose the stack's trust.

    Without them, the command pasted into a clean shell would use another store.
    """
    names = STACK_TRUST_VARIABLES.get(result.stack, ())
    if settings.ca_file is not None or not result.reproduce:
        return result
    assignments = [
        f"{name}={shlex.quote(os.environ[name])}"
        for name in names
        if os.environ.get(name)
    ]
    if not assignments:
        return result
    return replace(result, reproduce=" ".join([*assignments, result.reproduce]))


async def run_probes(
    targets: Sequence[Target],
    stacks: Sequence[Stack],
    *,
    settings: ProbeSettings,
    concurrency: int,
    state: RunState,
    on_result: Callable[[RunState], None] | None = None,
) -> RunState:
    """Probe every target with every stack, at most `concurrency` probes at once."""
    limit = bounded_concurrency(concurrency)
    semaphore = asyncio.Semaphore(limit)
    loop = asyncio.get_running_loop()
    executor = ThreadPoolExecutor(max_workers=limit, thread_name_prefix="probe")
    loop.set_default_executor(executor)
    for target in targets:
        state.reports.setdefault(target.key, TargetReport(target=target))
    state.total += len(targets) * len(stacks)

    async def one(target: Target, stack: Stack) -> None:
        async with semaphore:
            result = await probe_once(stack, target, settings)
        state.add(target, result)
        if on_result is not None:
            on_result(state)

    try:
        await asyncio.gather(*(one(t, s) for t in targets for s in stacks))
    finally:
        # Threads stuck in a blocking client are abandoned, not awaited: each has
        # its own socket timeout and ends on its own.
        executor.shutdown(wait=False, cancel_futures=True)
    return state
