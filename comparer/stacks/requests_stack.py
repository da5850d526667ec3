"""requests: a real `requests` GET with its default trust, in a worker thread."""

from __future__ import annotations

import asyncio
import importlib.metadata
import time

from comparer import trust
from comparer.model import ProbeResult, Reason, StackInfo, Target, TrustSource
from comparer.stacks.base import (
    ProbeSettings,
    elapsed_ms,
    python_command,
    result_from_exception,
)


def _get(url: str, verify: bool | str, timeout: float) -> tuple[int, str | None]:
    import requests

    # A new session per probe, as a script calling requests.get() would have. The
    # session reads REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE and proxy variables itself.
    with requests.Session() as session:
        response = session.get(
            url, verify=verify, timeout=timeout, allow_redirects=False, stream=True
        )
        with response:
            return response.status_code, _tls_version(response.raw)


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
        return python_command(
            "import requests; "
            f"print(requests.get({target.url!r}, verify={verify}, "
            "allow_redirects=False, timeout=10).status_code)"
        )

    async def probe(self, target: Target, settings: ProbeSettings) -> ProbeResult:
        """Run one GET in a thread; the runner bounds it with its timeout."""
        start = time.perf_counter()
        source = self.trust_source(settings).describe()
        reproduce = self.reproduce(target, settings)
        verify: bool | str = str(settings.ca_file) if settings.ca_file else True
        try:
            status, version = await asyncio.to_thread(
                _get, target.url, verify, settings.timeout
            )
        except Exception as exc:  # noqa: BLE001 - every failure is a verdict here
            import requests

            # urllib3 raises a read timeout only after the handshake and the request.
            after_handshake = isinstance(exc, requests.exceptions.ReadTimeout)
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
