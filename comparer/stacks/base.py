"""The interface that every TLS client stack implements, and shared helpers."""

from __future__ import annotations

import shlex
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from comparer.model import ProbeResult, Reason, StackInfo, Target
from comparer.reasons import classify_exception, describe_exception, is_http_error


@dataclass(frozen=True)
class ProbeSettings:
    """Options that apply to every probe of a run.

    `ca_file` replaces each stack's default trust with exactly that bundle. `timeout`
    is in seconds and bounds one probe from connect to the end of the response.
    """

    ca_file: Path | None = None
    timeout: float = 10.0


class Stack(Protocol):
    """A TLS client that verifies one target the way its users' programs would."""

    name: str

    def info(self, settings: ProbeSettings) -> StackInfo:
        """Describe the stack: version and the trust source it will use."""
        ...

    async def probe(self, target: Target, settings: ProbeSettings) -> ProbeResult:
        """Connect to the target and return the verdict.

        A misbehaving peer is a verdict, not an exception. The runner still turns an
        unexpected exception into an `error` result for this cell only.
        """
        ...


def elapsed_ms(start: float) -> float:
    """Return milliseconds since `start`, a `time.perf_counter()` value."""
    return (time.perf_counter() - start) * 1000


def python_command(code: str) -> str:
    """Return a shell-quoted `python3 -c CODE` line for a reproduce hint."""
    return shlex.join(["python3", "-c", code])


def result_from_exception(
    stack: str,
    exc: BaseException,
    *,
    start: float,
    trust: str | None,
    reproduce: str,
    address: str | None,
    handshake_done: bool = False,
) -> ProbeResult:
    """Turn a client's exception into a result.

    A failure in HTTP after a completed handshake (a non-HTTP TLS service, a server
    that closes after the handshake) is `ok` because the certificate was verified. A
    server that demands a client certificate is the exception: no request can succeed.
    """
    found = classify_exception(exc)
    after_handshake = handshake_done or is_http_error(exc)
    if after_handshake and found.reason is not Reason.CLIENT_CERTIFICATE:
        return ProbeResult(
            stack=stack,
            ok=True,
            reason=Reason.OK,
            detail="",
            note=f"handshake verified; HTTP failed: {describe_exception(exc)}",
            elapsed_ms=elapsed_ms(start),
            trust=trust,
            reproduce=reproduce,
            address=address,
        )
    return ProbeResult(
        stack=stack,
        ok=False,
        reason=found.reason,
        detail=found.detail,
        verify_code=found.verify_code,
        elapsed_ms=elapsed_ms(start),
        trust=trust,
        reproduce=reproduce,
        address=address,
    )
