"""The lab's listeners: TLS and raw TCP servers on one event loop in a thread.

Every listener binds a loopback address. A TLS endpoint replies to one HTTP/1.1
request after the handshake. The hostile endpoints misbehave at the TCP or TLS record
level.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import errno
import ipaddress
import logging
import os
import socket
import ssl
import struct
import threading
import warnings
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from comparer.lab.pki import pem_certificates, pem_private_key, write_private
from comparer.lab.scenarios import Behaviour, Endpoint

logger = logging.getLogger(__name__)

T = TypeVar("T")

HANDSHAKE_TIMEOUT = 30.0
REQUEST_TIMEOUT = 30.0
MAX_REQUEST_BYTES = 64 * 1024
CLOSE_TIMEOUT = 5.0
# Shorter than the per-read timeouts that clients usually set (seconds), so only a
# deadline on the whole handshake stops the trickle endpoint.
TRICKLE_INTERVAL = 0.5
RANDOM_REPLY_BYTES = 4096
TLS_RECORD_HEADER = 5
# TLS record content types 20-24: change_cipher_spec, alert, handshake,
# application_data and heartbeat.
TLS_CONTENT_TYPES = range(20, 25)

Handler = Callable[
    ["Site", asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]
]


class BadRequest(Exception):
    """The client sent an HTTP request that the lab rejects."""


@dataclass(frozen=True)
class Site:
    """One scenario's listeners and what they do with each connection.

    `context` is the server-side TLS context, None for the hostile endpoints that
    send no certificate. The trickle endpoint uses it only to build its flight.
    """

    name: str
    behaviour: Behaviour
    sockets: tuple[socket.socket, ...]
    context: ssl.SSLContext | None = None

    @property
    def port(self) -> int:
        """The TCP port that every listener of this site uses."""
        port: int = self.sockets[0].getsockname()[1]
        return port


def bind_loopback(address: str, port: int = 0) -> socket.socket:
    """Bind a TCP socket to a loopback address, or raise ValueError for any other."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        raise ValueError(
            f"invalid listen address {address!r}: use a loopback IP such as 127.0.0.1"
        ) from None
    if not ip.is_loopback:
        raise ValueError(
            f"cannot listen on {address}: not a loopback address, and the lab binds "
            "only 127.0.0.0/8 or ::1"
        )
    family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((address, port))
    except OSError:
        sock.close()
        raise
    return sock


def bind_localhost(attempts: int = 20) -> tuple[socket.socket, ...]:
    """Bind a free port on 127.0.0.1 and the same port on ::1 when IPv6 loopback works.

    Clients resolve "localhost" to either address first, so both must serve the
    scenario. Returns only the IPv4 socket when the host has no IPv6 loopback.
    """
    for _ in range(attempts):
        ipv4 = bind_loopback("127.0.0.1")
        try:
            ipv6 = bind_loopback("::1", ipv4.getsockname()[1])
        except OSError as exc:
            if exc.errno in (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT):
                logger.debug("no IPv6 loopback, listening on 127.0.0.1 only: %s", exc)
                return (ipv4,)
            ipv4.close()
            if exc.errno == errno.EADDRINUSE:
                continue
            raise
        return (ipv4, ipv6)
    raise OSError(
        errno.EADDRINUSE,
        f"found no port free on both 127.0.0.1 and ::1 in {attempts} attempts",
    )


def make_tls_context(endpoint: Endpoint, directory: Path, name: str) -> ssl.SSLContext:
    """Build the server context for `endpoint`, loading its chain from PEM files.

    The key file exists only while `load_cert_chain` reads it.
    """
    if endpoint.key is None:
        raise ValueError(f"lab scenario {name!r} has a chain but no private key")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    if endpoint.weak:
        # OpenSSL checks the security level when the chain is loaded, so it must be
        # lowered first.
        context.set_ciphers("DEFAULT:@SECLEVEL=0")
    if endpoint.legacy_tls:
        with warnings.catch_warnings():
            # Python 3.10 deprecated TLS 1.0 and 1.1, but offering only them is the
            # point of this endpoint.
            warnings.simplefilter("ignore", DeprecationWarning)
            context.minimum_version = ssl.TLSVersion.TLSv1
            context.maximum_version = ssl.TLSVersion.TLSv1_1
    if endpoint.client_ca is not None:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(
            cadata=pem_certificates([endpoint.client_ca]).decode()
        )

    chain_file = directory / f"{name}.chain.pem"
    key_file = directory / f"{name}.key.pem"
    write_private(chain_file, pem_certificates(endpoint.chain))
    write_private(key_file, pem_private_key(endpoint.key))
    try:
        context.load_cert_chain(chain_file, key_file)
    finally:
        key_file.unlink()
    return context


def http_response(status: str, body: bytes, *, with_body: bool = True) -> bytes:
    """Return a complete HTTP/1.1 response that closes the connection."""
    head = (
        f"HTTP/1.1 {status}\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: close\r\n"
        "\r\n"
    ).encode("ascii")
    return head + body if with_body else head


async def _read_record(reader: asyncio.StreamReader) -> bytes:
    """Read one TLS record, normally the ClientHello, header included."""
    header = await reader.readexactly(TLS_RECORD_HEADER)
    (length,) = struct.unpack("!H", header[3:5])
    return header + await reader.readexactly(length)


async def _discard_input(reader: asyncio.StreamReader) -> None:
    """Read and drop whatever the client sends until it closes the connection."""
    while await reader.read(65536):
        pass


class TlsSession:
    """Server-side TLS over an asyncio stream, driven through memory BIOs.

    asyncio's own TLS transport discards the alert that a failed handshake produces,
    so a client would see a bare EOF. Driving `ssl.SSLObject` directly sends every
    alert first, as a real server does: `protocol version` to a TLS 1.2 client of a
    TLS 1.0 server, `certificate required` when the client sent no certificate.
    """

    def __init__(
        self,
        context: ssl.SSLContext,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._tls = context.wrap_bio(self._incoming, self._outgoing, server_side=True)
        self._reader = reader
        self._writer = writer

    @property
    def version(self) -> str | None:
        """The negotiated protocol version, None before the handshake."""
        return self._tls.version()

    async def handshake(self) -> None:
        """Complete the handshake, sending any alert before raising ssl.SSLError."""
        await self._drive(self._tls.do_handshake)

    async def read(self, size: int = 65536) -> bytes:
        """Return decrypted data, or b"" once the client has closed the session."""
        try:
            return await self._drive(lambda: self._tls.read(size))
        except ssl.SSLZeroReturnError:
            return b""

    async def write(self, data: bytes) -> None:
        """Encrypt and send `data`."""
        self._tls.write(data)
        await self._flush()

    async def close(self) -> None:
        """Send close_notify without waiting for the client's."""
        with contextlib.suppress(ssl.SSLWantReadError):
            self._tls.unwrap()
        await self._flush()

    async def _drive(self, operation: Callable[[], T]) -> T:
        while True:
            try:
                result = operation()
            except ssl.SSLWantReadError:
                await self._flush()
                await self._receive()
                continue
            except ssl.SSLError:
                await self._flush()
                raise
            await self._flush()
            return result

    async def _flush(self) -> None:
        data = self._outgoing.read()
        if data:
            self._writer.write(data)
            await self._writer.drain()

    async def _receive(self) -> None:
        data = await self._reader.read(65536)
        if data:
            self._incoming.write(data)
        else:
            self._incoming.write_eof()


async def _read_request(session: TlsSession) -> bytes:
    """Read the request line and headers of one HTTP request."""
    request = b""
    while b"\r\n\r\n" not in request:
        if len(request) > MAX_REQUEST_BYTES:
            raise BadRequest(f"request headers exceed {MAX_REQUEST_BYTES} bytes")
        data = await session.read()
        if not data:
            raise EOFError("the client closed the connection before a full request")
        request += data
    return request


async def _answer_https(
    site: Site, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    if site.context is None:
        raise ValueError(f"lab scenario {site.name!r} has no TLS context")
    session = TlsSession(site.context, reader, writer)
    await asyncio.wait_for(session.handshake(), HANDSHAKE_TIMEOUT)
    logger.debug("%s: handshake done, %s", site.name, session.version)
    request = await asyncio.wait_for(_read_request(session), REQUEST_TIMEOUT)
    request_line = request.split(b"\r\n", 1)[0]
    logger.debug("%s: request %r", site.name, request_line[:200])
    body = f"comparer lab: {site.name}\n".encode()
    with_body = not request_line.startswith(b"HEAD ")
    await session.write(http_response("200 OK", body, with_body=with_body))
    await session.close()


async def _stay_silent(
    site: Site, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    await _discard_input(reader)


async def _send_random_bytes(
    site: Site, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    await _read_record(reader)
    reply = bytearray(os.urandom(RANDOM_REPLY_BYTES))
    # A first byte that happens to be a TLS content type could make a client wait
    # for the rest of a record, so it is moved out of that range.
    if reply[0] in TLS_CONTENT_TYPES:
        reply[0] |= 0x80
    writer.write(bytes(reply))
    await writer.drain()
    await _discard_input(reader)


async def _answer_plain_http(
    site: Site, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    first = await reader.read(65536)
    # A TLS ClientHello (record type 22) gets 400 Bad Request, and a plain HTTP
    # request gets 200.
    if first[:1] == b"\x16":
        body = b"This port speaks plain HTTP, not TLS.\n"
        writer.write(http_response("400 Bad Request", body))
    else:
        writer.write(http_response("200 OK", f"comparer lab: {site.name}\n".encode()))
    await writer.drain()


async def _reset(
    site: Site, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    sock = writer.get_extra_info("socket")
    # SO_LINGER with a zero timeout makes close() send RST instead of FIN.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def _close_after_hello(
    site: Site, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    # Reading the whole ClientHello first leaves no unread data, so closing sends
    # FIN, not RST.
    await _read_record(reader)


def _server_flight(context: ssl.SSLContext, client_hello: bytes) -> bytes:
    """Return the bytes a real TLS server sends in reply to `client_hello`."""
    incoming = ssl.MemoryBIO()
    outgoing = ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_side=True)
    incoming.write(client_hello)
    with contextlib.suppress(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


async def _trickle(
    site: Site, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    if site.context is None:
        raise ValueError(f"lab scenario {site.name!r} needs a TLS context to trickle")
    flight = _server_flight(site.context, await _read_record(reader))
    logger.debug("%s: trickling %d bytes", site.name, len(flight))
    for index in range(len(flight)):
        writer.write(flight[index : index + 1])
        await writer.drain()
        await asyncio.sleep(TRICKLE_INTERVAL)
    await _discard_input(reader)


HANDLERS: dict[Behaviour, Handler] = {
    "https": _answer_https,
    "silent": _stay_silent,
    "random-bytes": _send_random_bytes,
    "plain-http": _answer_plain_http,
    "reset": _reset,
    "close-after-hello": _close_after_hello,
    "trickle": _trickle,
}

# Errors that a misbehaving or impatient client causes, the lab's normal traffic.
_CLIENT_ERRORS = (OSError, EOFError, BadRequest, asyncio.TimeoutError)


def _log_loop_exception(
    loop: asyncio.AbstractEventLoop, context: dict[str, Any]
) -> None:
    """Log client errors at DEBUG, since failing clients are the point of the lab."""
    exception = context.get("exception")
    if isinstance(exception, _CLIENT_ERRORS):
        logger.debug("%s: %r", context.get("message"), exception)
        return
    loop.default_exception_handler(context)


class LabServer:
    """Runs the listeners of every site on one event loop in a background thread."""

    def __init__(self, sites: Sequence[Site]) -> None:
        self.sites = tuple(sites)
        self._started: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._thread: threading.Thread | None = None

    def start(self, timeout: float = 30.0) -> None:
        """Start the thread and return once every listener accepts connections."""
        self._thread = threading.Thread(
            target=self._run, name="comparer-lab", daemon=True
        )
        self._thread.start()
        try:
            self._started.result(timeout)
        except BaseException:
            self.stop()
            raise

    def stop(self, timeout: float = 30.0) -> None:
        """Close every listener and connection, then end the thread."""
        loop, stopping = self._loop, self._stopping
        if loop is not None and stopping is not None and not loop.is_closed():
            # RuntimeError: the loop closed between the check and the call.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(stopping.set)
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                logger.warning("lab server thread did not stop within %.0f s", timeout)
        for site in self.sites:
            for sock in site.sockets:
                sock.close()

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:
            if not self._started.done():
                self._started.set_exception(exc)
            else:
                logger.warning("lab server stopped with an error: %r", exc)

    async def _serve(self) -> None:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(_log_loop_exception)
        self._stopping = asyncio.Event()
        self._loop = loop
        servers: list[asyncio.AbstractServer] = []
        try:
            for site in self.sites:
                servers.extend(await self._listen(site))
        except BaseException as exc:
            self._started.set_exception(exc)
            await self._shutdown(servers)
            return
        self._started.set_result(None)
        await self._stopping.wait()
        await self._shutdown(servers)

    async def _listen(self, site: Site) -> list[asyncio.AbstractServer]:
        handler = HANDLERS[site.behaviour]

        async def on_connection(
            reader: asyncio.StreamReader, writer: asyncio.StreamWriter
        ) -> None:
            await self._handle(site, handler, reader, writer)

        servers: list[asyncio.AbstractServer] = []
        for sock in site.sockets:
            servers.append(await asyncio.start_server(on_connection, sock=sock))
        logger.debug(
            "%s: listening on port %d (%s)", site.name, site.port, site.behaviour
        )
        return servers

    async def _handle(
        self,
        site: Site,
        handler: Handler,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        self._writers.add(writer)
        peer = writer.get_extra_info("peername")
        logger.debug("%s: connection from %s", site.name, peer)
        try:
            await handler(site, reader, writer)
            writer.close()
            await asyncio.wait_for(writer.wait_closed(), CLOSE_TIMEOUT)
        except _CLIENT_ERRORS as exc:
            logger.debug("%s: connection from %s ended: %r", site.name, peer, exc)
        except asyncio.CancelledError:
            # The lab is stopping. Ending the task normally keeps the stream callback
            # of Python 3.11 from logging the cancellation as an error.
            logger.debug("%s: connection from %s closed at stop", site.name, peer)
        finally:
            self._writers.discard(writer)
            if not writer.transport.is_closing():
                writer.transport.abort()

    async def _shutdown(self, servers: list[asyncio.AbstractServer]) -> None:
        for server in servers:
            server.close()
        for writer in list(self._writers):
            writer.transport.abort()

        # Cancelling the remaining tasks ends the handlers that still wait on a
        # client, such as those of the silent and trickle endpoints.
        current = asyncio.current_task()
        tasks = [task for task in asyncio.all_tasks() if task is not current]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for server in servers:
            try:
                await asyncio.wait_for(server.wait_closed(), CLOSE_TIMEOUT)
            except asyncio.TimeoutError:
                logger.warning("a lab listener still had connections after close")
