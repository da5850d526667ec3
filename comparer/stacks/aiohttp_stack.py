"""aiohttp: a real `aiohttp.ClientSession` request with its defaults."""

from __future__ import annotations

import functools
import ssl
import time

from comparer import trust
from comparer.model import ProbeResult, Reason, StackInfo, Target, TrustSource
from comparer.pinning import (
    aiohttp_reproduce_lines,
    aiohttp_request_options,
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
def _context(cafile: str) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=cafile)


class AiohttpStack:
    """aiohttp with the default context it builds when it is imported."""

    name = "aiohttp"

    def trust_source(self, settings: ProbeSettings) -> TrustSource:
        """Return the trust this stack uses under the given settings."""
        if settings.ca_file is not None:
            return trust.ca_file_source(settings.ca_file)
        # aiohttp 3.10.6+ creates its verified context at import time, so the process
        # environment at import decides; comparer imports it no earlier than a probe.
        return trust.openssl_default_source()

    def info(self, settings: ProbeSettings) -> StackInfo:
        """Describe aiohttp."""
        import aiohttp

        return StackInfo(
            name=self.name,
            version=aiohttp.__version__,
            trust=self.trust_source(settings).describe(),
        )

    def reproduce(self, target: Target, settings: ProbeSettings) -> str:
        """Return a python3 one-liner that repeats this probe."""
        ssl_arg = (
            f"ssl.create_default_context(cafile={str(settings.ca_file)!r})"
            if settings.ca_file
            else "True"
        )
        resolver, session_args, get_args = aiohttp_reproduce_lines(target)
        return python_command(
            "import asyncio, socket, ssl, aiohttp\n"
            + "".join(line + "\n" for line in resolver)
            + "async def main():\n"
            f"    async with aiohttp.ClientSession({session_args}) as s:\n"
            f"        async with s.get({get_args}, ssl={ssl_arg}, "
            "allow_redirects=False) as r:\n"
            "            print(r.status)\n"
            "asyncio.run(main())"
        )

    async def probe(self, target: Target, settings: ProbeSettings) -> ProbeResult:
        """Send one GET and read the TLS version from the response's connection."""
        import aiohttp

        start = time.perf_counter()
        source = self.trust_source(settings).describe()
        reproduce = self.reproduce(target, settings)
        why = sni_unavailable(self.name, target)
        if why is not None:
            return unavailable_result(
                self.name, target, why, trust=source, reproduce=None
            )
        url, options, resolver = aiohttp_request_options(target)
        ssl_arg: ssl.SSLContext | bool = True
        version = None
        try:
            if settings.ca_file is not None:
                ssl_arg = _context(str(settings.ca_file))
            timeout = aiohttp.ClientTimeout(total=settings.timeout)
            # A pinned name gets a resolver that returns the pinned address.
            connector = aiohttp.TCPConnector(resolver=resolver) if resolver else None
            async with (
                aiohttp.ClientSession(timeout=timeout, connector=connector) as session,
                session.get(
                    url, ssl=ssl_arg, allow_redirects=False, **options
                ) as response,
            ):
                # The connection goes back to the pool as soon as a short body
                # is read, so the protocol (private) is the fallback.
                connection = response.connection
                transport = connection.transport if connection else None
                if transport is None:
                    protocol = getattr(response, "_protocol", None)
                    transport = getattr(protocol, "transport", None)
                ssl_object = (
                    transport.get_extra_info("ssl_object") if transport else None
                )
                version = ssl_object.version() if ssl_object else None
                status = response.status
        except aiohttp.ClientConnectorError as exc:
            # Raised for the TCP connect and the TLS handshake, including certificate
            # errors (ClientConnectorCertificateError keeps the stdlib error).
            return result_from_exception(
                self.name,
                exc,
                start=start,
                trust=source,
                reproduce=reproduce,
                address=target.address,
            )
        except (
            aiohttp.ClientResponseError,
            aiohttp.ServerDisconnectedError,
            aiohttp.ClientPayloadError,
        ) as exc:
            return result_from_exception(
                self.name,
                exc,
                start=start,
                trust=source,
                reproduce=reproduce,
                address=target.address,
                handshake_done=True,
            )
        except (aiohttp.ClientError, OSError, ssl.SSLError, TimeoutError) as exc:
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
