"""The `openssl s_client` command line, run as a subprocess with an argument list."""

from __future__ import annotations

import asyncio
import functools
import re
import shlex
import shutil
import subprocess
import time
from typing import Any

from comparer import trust
from comparer.model import ProbeResult, Reason, StackInfo, Target, TrustSource
from comparer.reasons import reason_for_ssl_error, reason_for_verify_code
from comparer.stacks.base import ProbeSettings, elapsed_ms

_VERIFY_CODE = re.compile(r"^Verify return code: (\d+) \((.*)\)", re.MULTILINE)
_NEW_SESSION = re.compile(r"^New, (TLSv[\d.]+|SSLv3)", re.MULTILINE)
# "40F7...:error:0A000102:SSL routines:func:unsupported protocol:file:line:" in 3.x,
# the same fields in 1.1.1: the reason is the sixth colon-separated field.
_ERROR_LINE = re.compile(
    r"^[0-9A-Fa-f]+:error:([0-9A-Fa-f]+):([^:]*):([^:]*):([^:]*):", re.M
)
# "connect:errno=111" for a refused connection, "write:errno=104" for a reset one.
_CONNECT_ERRNO = re.compile(r"(?:connect|read|write):errno=([1-9]\d*)")
_OUTPUT_LIMIT = 1 << 20
# The info callback line that -state prints when a handshake completes.
_HANDSHAKE_DONE = "SSL_connect:SSL negotiation finished successfully"
# HEAD, so that a large body never passes through the pipe.
_REQUEST = "HEAD %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n"


@functools.lru_cache(maxsize=1)
def openssl_version() -> tuple[str | None, tuple[int, ...]]:
    """Return the `openssl version` line and its numeric version, or (None, ())."""
    binary = shutil.which("openssl")
    if binary is None:
        return None, ()
    try:
        line = subprocess.run(
            [binary, "version"], capture_output=True, text=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None, ()
    match = re.search(r"(\d+)\.(\d+)\.(\d+)", line)
    numbers = tuple(int(part) for part in match.groups()) if match else ()
    return line, numbers


def build_argv(binary: str, target: Target, settings: ProbeSettings) -> list[str]:
    """Return the s_client argument list that verifies the target strictly."""
    connect = (
        f"[{target.connect_host}]"
        if ":" in target.connect_host
        else target.connect_host
    )
    argv = [binary, "s_client", "-connect", f"{connect}:{target.connect_port}"]
    if target.server_name is not None:
        argv += ["-servername", target.server_name]
    elif target.connect_host != target.host or not target.is_ip:
        # --no-sni, or an address: s_client must not send the connect host instead.
        argv += ["-noservername"]
    # Without -verify_return_error s_client carries on after a verify failure, and
    # without -verify_hostname/-verify_ip it checks no name at all.
    argv += ["-verify_return_error"]
    # The probe sends an HTTP request on stdin: -ign_eof keeps s_client reading the
    # answer after stdin ends, and -nocommands keeps it from taking a line that
    # starts with "Q" or "R" for a command. -state prints the handshake states, the
    # only sign that the handshake finished: s_client prints "New, TLSv1.3" and
    # "Verify return code: 0" after a failed handshake too.
    argv += ["-ign_eof", "-nocommands", "-state"]
    if target.is_ip:
        argv += ["-verify_ip", target.host]
    else:
        argv += ["-verify_hostname", target.host]
    if settings.ca_file is not None:
        argv += ["-CAfile", str(settings.ca_file), "-no-CApath"]
        if openssl_version()[1] >= (3,):
            argv += ["-no-CAstore"]
    return argv


def classify_output(stdout: str, stderr: str) -> tuple[Reason, int | None, str]:
    """Classify s_client's output: verify code first, then OpenSSL error reasons.

    For a verified handshake the detail lists the errors that came after it.
    """
    errors = [match.group(4).strip() for match in _ERROR_LINE.finditer(stderr)]
    verify = _VERIFY_CODE.search(stdout)
    code = int(verify.group(1)) if verify else None
    if code:
        return reason_for_verify_code(code), code, verify.group(2) if verify else ""
    if _HANDSHAKE_DONE in stderr:
        # The handshake completed, so the chain verified. Later errors concern HTTP,
        # except a TLS 1.3 server's alert that it requires a client certificate,
        # which arrives after the client's side of the handshake is done.
        for error in errors:
            if reason_for_ssl_error(error) is Reason.CLIENT_CERTIFICATE:
                return Reason.CLIENT_CERTIFICATE, None, error
        return Reason.OK, 0 if code == 0 else None, "; ".join(errors)
    for error in errors:
        reason = reason_for_ssl_error(error)
        if reason is not None:
            return reason, None, error
    connect = _CONNECT_ERRNO.search(stderr)
    if connect or "BIO_lookup" in stderr or "BIO_connect" in stderr:
        detail = (
            errors[-1]
            if errors
            else (connect.group(0) if connect else "connect failed")
        )
        return Reason.CONNECT, None, detail
    # -state lines name handshake states, never a cause.
    state = ("SSL_connect:", "SSL3 alert ")
    messages = [line for line in stderr.splitlines() if not line.startswith(state)]
    detail = "; ".join(errors) or ([m for m in messages if m] or ["no output"])[-1]
    return Reason.PROTOCOL if "CONNECTED" in stdout else Reason.ERROR, None, detail


async def _read_into(stream: asyncio.StreamReader | None, buffer: bytearray) -> None:
    """Read a pipe until it closes, keeping the first _OUTPUT_LIMIT bytes."""
    if stream is None:
        return
    while chunk := await stream.read(65536):
        buffer += chunk[: max(0, _OUTPUT_LIMIT - len(buffer))]


async def _communicate(
    process: asyncio.subprocess.Process,
    request: bytes,
    stdout: bytearray,
    stderr: bytearray,
    timeout: float,
) -> bool:
    """Send the request, collect the output, and return whether s_client exited.

    The buffers keep what arrived before the timeout, so a verified handshake with a
    server that never closes the connection is still seen.
    """
    if process.stdin is not None:
        process.stdin.write(request)
        process.stdin.close()
    reading = asyncio.gather(
        _read_into(process.stdout, stdout),
        _read_into(process.stderr, stderr),
        process.wait(),
    )
    # When Ctrl-C cancels the run, asyncio.run cancels the readers one by one, so the
    # gathered future ends with their CancelledError. Reading it here stops asyncio
    # from logging it as "never retrieved".
    reading.add_done_callback(_mark_retrieved)
    try:
        await asyncio.wait_for(reading, timeout)
    except asyncio.TimeoutError:
        return False
    return True


def _mark_retrieved(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


class OpensslCliStack:
    """`openssl s_client` with SNI, -verify_return_error and -verify_hostname."""

    name = "openssl"

    def trust_source(self, settings: ProbeSettings) -> TrustSource:
        """Return the trust this stack uses under the given settings."""
        if settings.ca_file is not None:
            return trust.ca_file_source(settings.ca_file)
        return trust.openssl_cli_source()

    def info(self, settings: ProbeSettings) -> StackInfo:
        """Describe the openssl binary on PATH."""
        line, _ = openssl_version()
        return StackInfo(
            name=self.name,
            version=line or "not installed",
            trust=self.trust_source(settings).describe(),
        )

    async def probe(self, target: Target, settings: ProbeSettings) -> ProbeResult:
        """Run s_client, send one HEAD request and classify what it prints."""
        start = time.perf_counter()
        source = self.trust_source(settings).describe()
        binary = shutil.which("openssl")
        if binary is None:
            return ProbeResult(
                stack=self.name,
                ok=False,
                reason=Reason.UNAVAILABLE,
                detail="openssl not found on PATH; install OpenSSL",
                trust=source,
            )
        argv = build_argv(binary, target, settings)
        printf_format = _REQUEST.replace("\r\n", r"\r\n")
        reproduce = (
            shlex.join(["printf", printf_format, target.path, target.netloc])
            + " | "
            + shlex.join(["openssl", *argv[1:]])
        )
        request = _REQUEST % (target.path, target.netloc)
        process = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        stdout, stderr = bytearray(), bytearray()
        try:
            finished = await _communicate(
                process, request.encode(), stdout, stderr, settings.timeout
            )
        finally:
            # On a timeout or when the runner cancels the probe, the child must not
            # outlive it.
            if process.returncode is None:
                process.kill()
                await process.wait()
        out = stdout.decode("utf-8", "replace")
        err = stderr.decode("utf-8", "replace")
        reason, code, detail = classify_output(out, err)
        note = None
        if reason is Reason.OK:
            note = f"handshake verified; then {detail}" if detail else None
            if not finished:
                note = "handshake verified; the server kept the connection open"
            detail = ""
        elif not finished:
            reason, code = Reason.TIMEOUT, None
            detail = f"no verdict within {settings.timeout:g} s"
        version = _NEW_SESSION.search(out)
        return ProbeResult(
            stack=self.name,
            ok=reason is Reason.OK,
            reason=reason,
            detail=detail,
            note=note,
            verify_code=code,
            tls_version=version.group(1) if version and reason is Reason.OK else None,
            elapsed_ms=elapsed_ms(start),
            trust=source,
            reproduce=reproduce,
            address=target.address,
        )
