"""httpx: a real `httpx.AsyncClient` request with its defaults."""

from __future__ import annotations

import functools
import ssl
import time

from comparer import trust
from comparer.model import ProbeResult, Reason, StackInfo, Target, TrustSource
from comparer.pinning import (
    httpx_request_options,
    sni_unavailable,
    unavailable_result,
)
from comparer.stacks.base import (
    ProbeSettings,
    elapsed_ms,
    python_command,
    result_from_exception,
)


@functools.lru_cache(maxsize=8)
def _context(cafile: str | None) -> ssl.SSLContext:
    import httpx

    if cafile is not None:
        return ssl.create_default_context(cafile=cafile)
    # httpx's own factory, as AsyncClient(verify=True) calls it: SSL_CERT_FILE, then
    # SSL_CERT_DIR, then certifi. Built once per run instead of once per client.
    return httpx.create_ssl_context()


class HttpxStack:
    """httpx with certifi, or SSL_CERT_FILE / SSL_CERT_DIR (trust_env is on)."""

    name = "httpx"

    def trust_source(self, settings: ProbeSettings) -> TrustSource:
        """Return the trust this stack uses under the given settings."""
        if settings.ca_file is not None:
            return trust.ca_file_source(settings.ca_file)
        return trust.httpx_source()

    def info(self, settings: ProbeSettings) -> StackInfo:
        """Describe httpx and httpcore."""
        import httpcore
        import httpx

        return StackInfo(
            name=self.name,
            version=f"{httpx.__version__} (httpcore {httpcore.__version__})",
            trust=self.trust_source(settings).describe(),
        )

    def reproduce(self, target: Target, settings: ProbeSettings) -> str:
        """Return a python3 one-liner that repeats this probe."""
        verify = (
            f"ssl.create_default_context(cafile={str(settings.ca_file)!r})"
            if settings.ca_file
            else "True"
        )
        url, headers, extensions = httpx_request_options(target)
        if headers:
            # httpx.get() takes no extensions; a Client's get() does.
            return python_command(
                "import ssl, httpx; "
                f"print(httpx.Client(verify={verify}, timeout=10).get({url!r}, "
                f"headers={headers!r}, extensions={extensions!r}).status_code)"
            )
        return python_command(
            "import ssl, httpx; "
            f"print(httpx.get({url!r}, verify={verify}, timeout=10).status_code)"
        )

    async def probe(self, target: Target, settings: ProbeSettings) -> ProbeResult:
        """Stream one GET and read the TLS version from the open connection."""
        import httpx

        start = time.perf_counter()
        source = self.trust_source(settings).describe()
        reproduce = self.reproduce(target, settings)
        why = sni_unavailable(self.name, target)
        if why is not None:
            return unavailable_result(
                self.name, target, why, trust=source, reproduce=None
            )
        url, headers, extensions = httpx_request_options(target)
        cafile = str(settings.ca_file) if settings.ca_file else None
        version = None
        try:
            context = _context(cafile)
            async with (
                httpx.AsyncClient(
                    verify=context, timeout=settings.timeout, follow_redirects=False
                ) as client,
                client.stream(
                    "GET", url, headers=headers, extensions=extensions
                ) as response,
            ):
                stream = response.extensions.get("network_stream")
                ssl_object = stream.get_extra_info("ssl_object") if stream else None
                version = ssl_object.version() if ssl_object else None
                status = response.status_code
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            # httpcore raises these for the TCP connect and the TLS handshake.
            return result_from_exception(
                self.name,
                exc,
                start=start,
                trust=source,
                reproduce=reproduce,
                address=target.address,
            )
        except (httpx.HTTPError, httpx.StreamError) as exc:
            # Anything later (ReadError, RemoteProtocolError) came after the handshake.
            return result_from_exception(
                self.name,
                exc,
                start=start,
                trust=source,
                reproduce=reproduce,
                address=target.address,
                handshake_done=True,
            )
        except (OSError, ssl.SSLError) as exc:
            return result_from_exception(
                self.name,
                exc,
                start=start,
                trust=source,
                reproduce=reproduce,
                address=target.address,
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
