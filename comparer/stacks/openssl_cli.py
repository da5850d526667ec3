"""The `openssl s_client` command line, run as a subprocess with an argument list."""

from __future__ import annotations

import asyncio
import functools
import re
import shlex
import shutil
import subprocess
import time

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
_CONNECT_ERRNO = re.compile(r"connect:errno=(\d+)")
_OUTPUT_LIMIT = 1 << 20


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
    argv = [binary, "s_client", "-connect", f"{connect}:{target.port}"]
    if not target.is_ip:
        # Clients send SNI for names only, never for IP literals (RFC 6066).
        argv += ["-servername", target.host]
    # Without -verify_return_error s_client carries on after a verify failure, and
    # without -verify_hostname/-verify_ip it checks no name at all.
    argv += ["-verify_return_error"]
    if target.is_ip:
        argv += ["-verify_ip", target.host]
    else:
        argv += ["-verify_hostname", target.host]
    if settings.ca_file is not None:
        argv += ["-CAfile", str(settings.ca_file), "-no-CApath"]
        if openssl_version()[1] >= (3,):
            argv += ["-no-CAstore"]
    return argv


def classify_output(
    stdout: str, stderr: str, returncode: int
) -> tuple[Reason, int | None, str]:
    """Classify s_client's output: verify code first, then OpenSSL error reasons."""
    errors = [match.group(4).strip() for match in _ERROR_LINE.finditer(stderr)]
    verify = _VERIFY_CODE.search(stdout)
    code = int(verify.group(1)) if verify else None
    if code:
        return reason_for_verify_code(code), code, verify.group(2) if verify else ""
    for error in errors:
        reason = reason_for_ssl_error(error)
        if reason is not None:
            return reason, None, error
    if _NEW_SESSION.search(stdout) and returncode == 0:
        return Reason.OK, 0 if code == 0 else None, ""
    connect = _CONNECT_ERRNO.search(stderr)
    if connect or "BIO_lookup" in stderr or "BIO_connect" in stderr:
        detail = (
            errors[-1]
            if errors
            else (connect.group(0) if connect else "connect failed")
        )
        return Reason.CONNECT, None, detail
    if _NEW_SESSION.search(stdout):
        return Reason.OK, None, ""
    detail = "; ".join(errors) or (stderr.strip().splitlines() or ["no output"])[-1]
    return Reason.PROTOCOL if "CONNECTED" in stdout else Reason.ERROR, None, detail


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
        """Run s_client once with stdin closed and classify what it prints."""
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
        reproduce = shlex.join(["openssl", *argv[1:]]) + " </dev/null"
        process = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            stdout, stderr = await process.communicate()
        except asyncio.CancelledError:
            # The runner's timeout cancels us: the child must not outlive the probe.
            if process.returncode is None:
                process.kill()
                await process.wait()
            raise
        out = stdout[:_OUTPUT_LIMIT].decode("utf-8", "replace")
        err = stderr[:_OUTPUT_LIMIT].decode("utf-8", "replace")
        reason, code, detail = classify_output(out, err, process.returncode or 0)
        version = _NEW_SESSION.search(out)
        return ProbeResult(
            stack=self.name,
            ok=reason is Reason.OK,
            reason=reason,
            detail=detail,
            verify_code=code,
            tls_version=version.group(1) if version and reason is Reason.OK else None,
            elapsed_ms=elapsed_ms(start),
            trust=source,
            reproduce=reproduce,
            address=target.address,
        )
