"""The standard library: `ssl.create_default_context()` over asyncio streams."""

from __future__ import annotations

import asyncio
import functools
import ssl
import sys
import time

from comparer import trust
from comparer.model import ProbeResult, Reason, StackInfo, Target, TrustSource
from comparer.pinning import sni_unavailable, unavailable_result
from comparer.stacks.base import (
    ProbeSettings,
    elapsed_ms,
    python_command,
    result_from_exception,
)


@functools.lru_cache(maxsize=8)
def _context(cafile: str | None, flags: int) -> ssl.SSLContext:
    # One context per run: the default one reads SSL_CERT_FILE and SSL_CERT_DIR when it
    # is created, as a program's would.
    context = ssl.create_default_context(cafile=cafile)
    context.verify_flags |= flags
    return context


class StdlibStack:
    """Python's ssl module with its default context."""

    name = "stdlib"
    extra_flags = 0

    def trust_source(self, settings: ProbeSettings) -> TrustSource:
        """Return the trust this stack uses under the given settings."""
        if settings.ca_file is not None:
            return trust.ca_file_source(settings.ca_file)
        return trust.openssl_default_source()

    def info(self, settings: ProbeSettings) -> StackInfo:
        """Describe Python and the OpenSSL it links."""
        python = ".".join(map(str, sys.version_info[:3]))
        return StackInfo(
            name=self.name,
            version=f"Python {python}, {ssl.OPENSSL_VERSION}",
            trust=self.trust_source(settings).describe(),
        )

    def reproduce(self, target: Target, settings: ProbeSettings) -> str:
        """Return a python3 one-liner that repeats this probe."""
        cafile = repr(str(settings.ca_file)) if settings.ca_file else "None"
        return python_command(
            "import socket, ssl; "
            f"c = ssl.create_default_context(cafile={cafile}); "
            "s = socket.create_connection("
            f"({target.connect_host!r}, {target.connect_port})); "
            f"print(c.wrap_socket(s, server_hostname={target.host!r}).version())"
        )

    async def probe(self, target: Target, settings: ProbeSettings) -> ProbeResult:
        """Complete a handshake, send one HTTP request and read the status line."""
        start = time.perf_counter()
        source = self.trust_source(settings).describe()
        reproduce = self.reproduce(target, settings)
        why = sni_unavailable(self.name, target)
        if why is not None:
            return unavailable_result(
                self.name, target, why, trust=source, reproduce=None
            )
        cafile = str(settings.ca_file) if settings.ca_file else None
        try:
            context = _context(cafile, self.extra_flags)
        except (OSError, ssl.SSLError) as exc:
            return result_from_exception(
                self.name,
                exc,
                start=start,
                trust=source,
                reproduce=reproduce,
                address=target.address,
            )
        handshake_done = False
        writer = None
        try:
            reader, writer = await asyncio.open_connection(
                target.connect_host,
                target.connect_port,
                ssl=context,
                server_hostname=target.host,
            )
            handshake_done = True
            ssl_object = writer.get_extra_info("ssl_object")
            version = ssl_object.version() if ssl_object else None
            # Reading the response surfaces alerts that TLS 1.3 servers send after the
            # handshake, such as "certificate required".
            request = f"GET {target.path} HTTP/1.1\r\nHost: {target.netloc}\r\n"
            writer.write((request + "Connection: close\r\n\r\n").encode("latin-1"))
            await writer.drain()
            # A TLS service that is not HTTP may never respond, and the handshake
            # verdict is final by then, so the read gets only part of the budget.
            remaining = settings.timeout - elapsed_ms(start) / 1000
            status = await asyncio.wait_for(reader.readline(), max(0.1, remaining / 2))
        except (OSError, EOFError, ValueError, asyncio.TimeoutError) as exc:
            return result_from_exception(
                self.name,
                exc,
                start=start,
                trust=source,
                reproduce=reproduce,
                address=target.address,
                handshake_done=handshake_done,
            )
        finally:
            if writer is not None:
                writer.close()
                # A server that never returns close_notify would hold wait_closed()
                # for asyncio's 30 s SSL shutdown timeout, so the close gets what is
                # left of the budget and the connection is then dropped.
                left = settings.timeout - elapsed_ms(start) / 1000
                try:
                    await asyncio.wait_for(writer.wait_closed(), max(0.0, left))
                except (OSError, ssl.SSLError, asyncio.TimeoutError):
                    writer.transport.abort()
        note = None
        if not status.startswith(b"HTTP/"):
            note = "handshake verified; the server sent no HTTP response"
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
