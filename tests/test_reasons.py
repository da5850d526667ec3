"""Reason mapping from verify codes, SSL error names and real exceptions."""

from __future__ import annotations

import ssl

import pytest

from comparer.model import Reason
from comparer.reasons import (
    classify_exception,
    reason_for_ssl_error,
    reason_for_verify_code,
)


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        (0, Reason.OK),
        (10, Reason.EXPIRED),
        (9, Reason.NOT_YET_VALID),
        (18, Reason.SELF_SIGNED),
        (19, Reason.UNKNOWN_ISSUER),
        (20, Reason.UNKNOWN_ISSUER),
        (21, Reason.UNKNOWN_ISSUER),
        (62, Reason.HOSTNAME_MISMATCH),
        (64, Reason.HOSTNAME_MISMATCH),
        (66, Reason.WEAK_CRYPTO),
        (68, Reason.WEAK_CRYPTO),
        (85, Reason.INVALID_CERTIFICATE),
        (24, Reason.INVALID_CERTIFICATE),
        (26, Reason.INVALID_CERTIFICATE),
        (12345, Reason.ERROR),
    ],
)
def test_verify_codes(code: int, reason: Reason) -> None:
    assert reason_for_verify_code(code) is reason


def test_ssl_error_names_from_both_spellings() -> None:
    assert reason_for_ssl_error("UNSUPPORTED_PROTOCOL") is Reason.PROTOCOL
    assert reason_for_ssl_error("unsupported protocol") is Reason.PROTOCOL
    assert reason_for_ssl_error("tlsv13 alert certificate required") is (
        Reason.CLIENT_CERTIFICATE
    )
    assert reason_for_ssl_error("no such reason") is None


def _verify_error(code: int) -> ssl.SSLCertVerificationError:
    error = ssl.SSLCertVerificationError(1, "certificate verify failed")
    error.verify_code = code
    error.verify_message = "certificate has expired"
    return error


def test_chain_walk_through_cause() -> None:
    try:
        try:
            raise _verify_error(10)
        except ssl.SSLError as inner:
            raise RuntimeError("wrapped") from inner
    except RuntimeError as outer:
        found = classify_exception(outer)
    assert found.reason is Reason.EXPIRED
    assert found.verify_code == 10


def test_chain_walk_through_args() -> None:
    # requests wraps urllib3's MaxRetryError, which keeps the error in `reason`.
    class MaxRetry(Exception):
        def __init__(self, reason: BaseException) -> None:
            super().__init__("max retries")
            self.reason = reason

    outer = ValueError(MaxRetry(_verify_error(62)))
    assert classify_exception(outer).reason is Reason.HOSTNAME_MISMATCH


def test_connection_refused_is_connect() -> None:
    assert classify_exception(ConnectionRefusedError(111, "refused")).reason is (
        Reason.CONNECT
    )


def test_timeout_is_timeout() -> None:
    assert classify_exception(TimeoutError()).reason is Reason.TIMEOUT


def test_unknown_exception_is_error() -> None:
    assert classify_exception(ValueError("odd")).reason is Reason.ERROR
