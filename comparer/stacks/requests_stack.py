"""requests: a real `requests` GET with its default trust, in a worker thread."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib.metadata
import ssl
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from comparer import trust
from comparer.model import ProbeResult, Reason, StackInfo, Target, TrustSource
from comparer.pinning import (
    make_requests_adapter,
    needs_requests_adapter,
    requests_reproduce_code,
    requests_request_options,
    sni_unavailable,
    unavailable_result,
)
from comparer.reasons import iter_exception_chain
from comparer.stacks.base import (
    ProbeSettings,
    elapsed_ms,
    python_command,
    result_from_exception,
)


def _get(target: Target, verify: bool | str, timeout: float) -> tuple[int, str | None]:
    import requests

    # A new session per probe, as a script calling requests.get() would have. The
    # session reads REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE and proxy variables itself.
    url, headers = requests_request_options(target)
    with requests.Session() as session:
        if needs_requests_adapter(target):
            # Pools that connect to the address and keep SNI and the check on the name.
            session.mount("https://", make_requests_adapter(target))
        response = session.get(
            url,
            headers=headers,
            verify=verify,
            timeout=timeout,
            allow_redirects=False,
            stream=True,
        )
        with response:
            return response.status_code, _tls_version(response.raw)


T = TypeVar("T")


async def _run_in_daemon_thread(call: Callable[[], T]) -> T:
    """Run a blocking call in a daemon thread and await its result.

    A server that sends its response headers one byte at a time keeps requests
    reading long after the runner gave up on the probe, because urllib3's read
    timeout applies to each read. asyncio.to_thread's executor threads are joined at
    interpreter exit, so such a thread would keep the command from exiting; a daemon
    thread is left behind instead.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def finish(set_outcome: Callable[[], None]) -> None:
        if not future.done():  # the runner may have cancelled the probe
            set_outcome()

    def work() -> None:
        try:
            result = call()
        except BaseException as exc:  # noqa: BLE001 - re-raised by the awaiting probe
            outcome = functools.partial(future.set_exception, exc)
        else:
            outcome = functools.partial(future.set_result, result)
        # RuntimeError: the event loop closed before the call returned.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(finish, outcome)

    threading.Thread(target=work, name="requests-probe", daemon=True).start()
    return await future


def _timed_out_in_handshake(exc: BaseException) -> bool:
    """Return whether a timeout in the exception chain came from the TLS handshake."""
    # urllib3 2.x reports a handshake that timed out as a ReadTimeoutError as well,
    # so the frame of ssl.SSLSocket.do_handshake on a traceback distinguishes them.
    handshake = ssl.SSLSocket.do_handshake.__code__
    for item in iter_exception_chain(exc):
        frame = item.__traceback__
        while frame is not None:
            if frame.tb_frame.f_code is handshake:
                return True
            frame = frame.tb_next
    return False


def _tls_version(raw: object) -> str | None:
    # http.client drops the connection's socket when the server sends
    # "Connection: close", so the version is read from the response's own socket.
    # These are private attributes: a missing one only loses the version.
    candidates = [
        getattr(getattr(raw, "connection", None), "sock", None),
        getattr(
            getattr(getattr(getattr(raw, "_fp", None), "fp", None), "raw", None),
            "_sock",
            None,
        ),
    ]
    for sock in candidates:
        version = getattr(sock, "version", None)
        if callable(version):
            value = version()
            return value if isinstance(value, str) else None
    return None


class RequestsStack:
    """requests with certifi, unless REQUESTS_CA_BUNDLE or CURL_CA_BUNDLE is set."""

    name = "requests"

    def trust_source(self, settings: ProbeSettings) -> TrustSource:
        """Return the trust this stack uses under the given settings."""
        if settings.ca_file is not None:
            return trust.ca_file_source(settings.ca_file)
        return trust.requests_source()

    def info(self, settings: ProbeSettings) -> StackInfo:
        """Describe requests and the urllib3 under it."""
        requests_version = importlib.metadata.version("requests")
        urllib3_version = importlib.metadata.version("urllib3")
        return StackInfo(
            name=self.name,
            version=f"{requests_version} (urllib3 {urllib3_version})",
            trust=self.trust_source(settings).describe(),
        )

    def reproduce(self, target: Target, settings: ProbeSettings) -> str:
        """Return a python3 one-liner that repeats this probe."""
        verify = repr(str(settings.ca_file)) if settings.ca_file else "True"
        return python_command(requests_reproduce_code(target, verify))

    async def probe(self, target: Target, settings: ProbeSettings) -> ProbeResult:
        """Run one GET in a thread; the runner bounds it with its timeout."""
        start = time.perf_counter()
        source = self.trust_source(settings).describe()
        reproduce = self.reproduce(target, settings)
        why = sni_unavailable(self.name, target)
        if why is not None:
            return unavailable_result(
                self.name, target, why, trust=source, reproduce=None
            )
        verify: bool | str = str(settings.ca_file) if settings.ca_file else True
        try:
            status, version = await _run_in_daemon_thread(
                functools.partial(_get, target, verify, settings.timeout)
            )
        except Exception as exc:  # noqa: BLE001 - every failure is a verdict here
            import requests

            # A read timeout after the handshake leaves the certificate verified.
            after_handshake = isinstance(
                exc, requests.exceptions.ReadTimeout
            ) and not _timed_out_in_handshake(exc)
            return result_from_exception(
                self.name,
                exc,
                start=start,
                trust=source,
                reproduce=reproduce,
                address=target.address,
                handshake_done=after_handshake,
            )
        note = f"handshake verified; HTTP status {status}" if status >= 400 else None
        return ProbeResult(
            stack=self.name,
            ok=True,
            reason=Reason.OK,
            tls_version=version,
            elapsed_ms=elapsed_ms(start),
            trust=source,
            reproduce=reproduce,
            note=note,
            address=target.address,
        )
