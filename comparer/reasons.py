"""Map OpenSSL verify codes, OpenSSL error reasons and exceptions to one vocabulary.

Each client wraps the same OpenSSL failure in its own exception: requests in
`SSLError(MaxRetryError(reason=...))`, httpx on `__cause__`, aiohttp on
`.certificate_error`. `classify_exception` walks all of them to the stdlib's
`ssl.SSLCertVerificationError` and uses its `verify_code`, so the verdict comes from a
code, never from message words.
"""

from __future__ import annotations

import errno
import http.client
import re
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass

from comparer.model import Reason

# X509_V_ERR_* codes from OpenSSL's x509_vfy.h (stable across 1.1.1 and 3.x).
VERIFY_CODES: dict[int, Reason] = {
    0: Reason.OK,
    2: Reason.UNKNOWN_ISSUER,  # unable to get issuer certificate
    9: Reason.NOT_YET_VALID,
    10: Reason.EXPIRED,
    18: Reason.SELF_SIGNED,  # self-signed leaf
    # 19 is "self-signed certificate in certificate chain": the chain ends at a root
    # that is not trusted, which is the same situation as an unknown issuer.
    19: Reason.UNKNOWN_ISSUER,
    20: Reason.UNKNOWN_ISSUER,  # unable to get local issuer certificate
    21: Reason.UNKNOWN_ISSUER,  # unable to verify the first certificate
    27: Reason.UNKNOWN_ISSUER,  # certificate not trusted
    28: Reason.UNKNOWN_ISSUER,  # certificate rejected
    62: Reason.HOSTNAME_MISMATCH,
    63: Reason.HOSTNAME_MISMATCH,  # email address mismatch
    64: Reason.HOSTNAME_MISMATCH,  # IP address mismatch
    66: Reason.WEAK_CRYPTO,  # EE certificate key too weak
    67: Reason.WEAK_CRYPTO,  # CA certificate key too weak
    68: Reason.WEAK_CRYPTO,  # CA signature digest algorithm too weak
}

# Codes that concern the certificate itself (malformed, wrong purpose, path length,
# the RFC 5280 checks of VERIFY_X509_STRICT such as 85, missing Authority Key Id).
_CERTIFICATE_CODES = {4, 5, 6, 7, 8, 11, 13, 14, 15, 16, 22, 24, 25, 26, 29, 30, 31, 32}
_CERTIFICATE_CODES |= {34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 45, 46, 47, 48, 49}
_CERTIFICATE_CODES |= {50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61}
_CERTIFICATE_CODES |= set(range(69, 100))

# Error reasons of OpenSSL's SSL library, by the names that both `ssl.SSLError.reason`
# and the command line ("error:0A000102:SSL routines::unsupported protocol") carry.
SSL_REASONS: dict[str, Reason] = {
    "UNSUPPORTED_PROTOCOL": Reason.PROTOCOL,
    "TLSV1_ALERT_PROTOCOL_VERSION": Reason.PROTOCOL,
    "NO_PROTOCOLS_AVAILABLE": Reason.PROTOCOL,
    "WRONG_VERSION_NUMBER": Reason.PROTOCOL,
    "UNKNOWN_PROTOCOL": Reason.PROTOCOL,
    "PACKET_LENGTH_TOO_LONG": Reason.PROTOCOL,
    "RECORD_LENGTH_MISMATCH": Reason.PROTOCOL,
    "RECORD_LAYER_FAILURE": Reason.PROTOCOL,
    "HTTP_REQUEST": Reason.PROTOCOL,
    "EXCESSIVE_MESSAGE_SIZE": Reason.PROTOCOL,
    "UNEXPECTED_EOF_WHILE_READING": Reason.PROTOCOL,
    "UNEXPECTED_MESSAGE": Reason.PROTOCOL,
    "SSLV3_ALERT_HANDSHAKE_FAILURE": Reason.PROTOCOL,
    "SSLV3_ALERT_UNEXPECTED_MESSAGE": Reason.PROTOCOL,
    "TLSV1_ALERT_DECODE_ERROR": Reason.PROTOCOL,
    "TLSV1_ALERT_INTERNAL_ERROR": Reason.PROTOCOL,
    "TLSV1_ALERT_ILLEGAL_PARAMETER": Reason.PROTOCOL,
    "WRONG_SIGNATURE_TYPE": Reason.PROTOCOL,
    "NO_SHARED_CIPHER": Reason.PROTOCOL,
    "NO_CIPHERS_AVAILABLE": Reason.PROTOCOL,
    "TLSV1_ALERT_INSUFFICIENT_SECURITY": Reason.PROTOCOL,
    "LEGACY_SIGALG_DISALLOWED_OR_UNSUPPORTED": Reason.PROTOCOL,
    "DH_KEY_TOO_SMALL": Reason.WEAK_CRYPTO,
    "EE_KEY_TOO_SMALL": Reason.WEAK_CRYPTO,
    "CA_KEY_TOO_SMALL": Reason.WEAK_CRYPTO,
    "CA_MD_TOO_WEAK": Reason.WEAK_CRYPTO,
    "TLSV13_ALERT_CERTIFICATE_REQUIRED": Reason.CLIENT_CERTIFICATE,
    "SSLV3_ALERT_BAD_CERTIFICATE": Reason.CLIENT_CERTIFICATE,
    "PEER_DID_NOT_RETURN_A_CERTIFICATE": Reason.CLIENT_CERTIFICATE,
    "CERTIFICATE_VERIFY_FAILED": Reason.INVALID_CERTIFICATE,
}

_CONNECT_ERRNOS = {
    errno.ECONNREFUSED,
    errno.ECONNRESET,
    errno.EHOSTUNREACH,
    errno.ENETUNREACH,
    errno.ECONNABORTED,
    errno.EPIPE,
    errno.EADDRNOTAVAIL,
}


@dataclass(frozen=True)
class Classification:
    """A normalised reason with the verify code behind it, when there was one."""

    reason: Reason
    verify_code: int | None = None
    detail: str = ""


def reason_for_verify_code(code: int) -> Reason:
    """Return the reason for an OpenSSL X509_V_ERR_* verify code."""
    if code in VERIFY_CODES:
        return VERIFY_CODES[code]
    if code in _CERTIFICATE_CODES:
        return Reason.INVALID_CERTIFICATE
    return Reason.ERROR


def reason_for_ssl_error(name: str | None) -> Reason | None:
    """Return the reason for an OpenSSL SSL error name, or None if it is unknown."""
    if not name:
        return None
    return SSL_REASONS.get(name.upper().replace(" ", "_"))


def iter_exception_chain(exc: BaseException) -> Iterator[BaseException]:
    """Yield the exception and every exception it wraps, each once."""
    seen: set[int] = set()
    stack: list[BaseException] = [exc]
    while stack:
        current = stack.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        linked: list[object] = [current.__cause__, current.__context__]
        # urllib3's MaxRetryError.reason, aiohttp's certificate_error and os_error.
        for attribute in ("reason", "certificate_error", "os_error", "_os_error"):
            linked.append(getattr(current, attribute, None))
        linked.extend(current.args)
        stack.extend(item for item in linked if isinstance(item, BaseException))


def _verify_error(exc: BaseException) -> ssl.SSLCertVerificationError | None:
    for item in iter_exception_chain(exc):
        # aiohttp's ClientConnectorCertificateError subclasses the stdlib type
        # without its attributes; the real error sits on its certificate_error.
        if isinstance(item, ssl.SSLCertVerificationError) and hasattr(
            item, "verify_code"
        ):
            return item
    return None


# Python leaves `SSLError.reason` empty for codes its table lacks, but the message
# still starts with the OpenSSL name: "[SSL: LEGACY_SIGALG_DISALLOWED_OR_UNSUPPORTED]".
_BRACKETED_NAME = re.compile(r"\[SSL: ([A-Z0-9_]+)\]")


def _ssl_reason_name(error: ssl.SSLError) -> str | None:
    name = getattr(error, "reason", None)
    if name:
        return str(name)
    match = _BRACKETED_NAME.search(str(error))
    return match.group(1) if match else None


def _ssl_error_reason(exc: BaseException) -> Reason | None:
    for item in iter_exception_chain(exc):
        if isinstance(item, ssl.SSLError):
            mapped = reason_for_ssl_error(_ssl_reason_name(item))
            if mapped is not None:
                return mapped
            if isinstance(item, ssl.SSLEOFError | ssl.SSLZeroReturnError):
                return Reason.PROTOCOL
    return None


def is_http_error(exc: BaseException) -> bool:
    """Return whether the failure happened in HTTP, after a completed TLS handshake."""
    return any(
        isinstance(item, http.client.HTTPException)
        for item in iter_exception_chain(exc)
    )


def _generic_reason(exc: BaseException) -> Reason:
    for item in iter_exception_chain(exc):
        if isinstance(item, TimeoutError | socket.timeout):
            return Reason.TIMEOUT
        if isinstance(item, socket.gaierror):
            return Reason.CONNECT
        # asyncio's SSL protocol raises a bare ConnectionResetError(), with no errno,
        # when the peer closes the connection during the handshake (sslproto.py in
        # Python 3.11). A real reset carries ECONNRESET.
        if isinstance(item, ConnectionResetError) and not item.args:
            return Reason.PROTOCOL
        if isinstance(item, ConnectionError):
            return Reason.CONNECT
        if isinstance(item, OSError) and item.errno in _CONNECT_ERRNOS:
            return Reason.CONNECT
    return Reason.ERROR


def classify_exception(exc: BaseException) -> Classification:
    """Classify a client's exception by verify code, then SSL reason, then type."""
    verify = _verify_error(exc)
    if verify is not None:
        code = verify.verify_code
        return Classification(
            reason=reason_for_verify_code(code),
            verify_code=code,
            detail=verify.verify_message or str(verify),
        )
    ssl_reason = _ssl_error_reason(exc)
    if ssl_reason is not None:
        return Classification(reason=ssl_reason, detail=describe_exception(exc))
    return Classification(reason=_generic_reason(exc), detail=describe_exception(exc))


def describe_exception(exc: BaseException) -> str:
    """Return a one-line message for an exception: its type and text."""
    text = " ".join(str(exc).split())
    name = type(exc).__name__
    if not text:
        return name
    return f"{name}: {text}"[:500]
