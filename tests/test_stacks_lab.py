"""Every host stack against every lab scenario, with real handshakes."""

from __future__ import annotations

import asyncio
import sys

import pytest

from comparer.lab import Lab, names
from comparer.model import ProbeResult, Reason
from comparer.stacks import DEFAULT_STACKS, get_stack
from comparer.stacks.base import ProbeSettings
from comparer.targets import parse_target

# Where a stack's verdict differs from what the scenario itself predicts, and why.
# (scenario, stack) -> (reason, why); the table is the documentation.
KNOWN_DIFFERENCES: dict[tuple[str, str], tuple[Reason, str]] = {
    ("cn-only", "requests"): (
        Reason.HOSTNAME_MISMATCH,
        "urllib3 2.x sets hostname_checks_common_name = False; the other stacks fall "
        "back to the subject CN when a certificate has no SAN",
    ),
}
# Python 3.13's default context sets VERIFY_X509_STRICT (urllib3 >= 2.4 does the same
# there), so the Python stacks take a scenario's strict verdict; OpenSSL's own
# default, and Python before 3.13, take the lenient one.
STRICT_PYTHON = sys.version_info >= (3, 13)
# The common-name fallback is a hostname rule, which VERIFY_X509_STRICT leaves alone.
HOSTNAME_RULES = {"cn-only"}

# Stacks that cannot report the TLS version on the lab, and why.
TLS_VERSION_UNKNOWN = {
    "aiohttp": "aiohttp releases the connection before returning a response whose "
    "short body arrived with 'Connection: close', and the transport is gone with it",
}

SCENARIOS = [name for name in names(hostile=False) if name != "internal-root"]


def expected_reason(lab: Lab, scenario: str, stack: str) -> Reason:
    """Return the reason a stack should give on this machine."""
    known = KNOWN_DIFFERENCES.get((scenario, stack))
    if known is not None:
        return known[0]
    entry = lab.scenario(scenario)
    if entry.lenient is None:
        return entry.expect
    if scenario in HOSTNAME_RULES:
        return entry.lenient
    strict = STRICT_PYTHON and stack != "openssl"
    return entry.expect if strict else entry.lenient


def probe(lab: Lab, scenario: str, stack: str) -> ProbeResult:
    target = parse_target(lab.scenario(scenario).target)
    settings = ProbeSettings(ca_file=lab.ca_bundle, timeout=10)
    return asyncio.run(get_stack(stack).probe(target, settings))


@pytest.mark.usefixtures("clean_tls_env")
@pytest.mark.parametrize("stack", DEFAULT_STACKS)
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_stack_verdict_on_scenario(lab: Lab, scenario: str, stack: str) -> None:
    result = probe(lab, scenario, stack)
    expected = expected_reason(lab, scenario, stack)
    assert result.reason is expected, result.detail
    assert result.ok is (expected is Reason.OK)
    assert result.stack == stack
    assert result.where == "host"
    assert result.elapsed_ms > 0
    assert result.reproduce
    assert result.trust is not None and "--ca-file" in result.trust


@pytest.mark.usefixtures("clean_tls_env")
@pytest.mark.parametrize("stack", DEFAULT_STACKS)
def test_verified_result_has_tls_version(lab: Lab, stack: str) -> None:
    result = probe(lab, "good", stack)
    if stack in TLS_VERSION_UNKNOWN:
        assert result.tls_version is None
    else:
        assert result.tls_version in {"TLSv1.2", "TLSv1.3"}


@pytest.mark.usefixtures("clean_tls_env")
@pytest.mark.parametrize("stack", DEFAULT_STACKS)
def test_verify_failure_keeps_verify_code(lab: Lab, stack: str) -> None:
    result = probe(lab, "expired-leaf", stack)
    assert result.verify_code == 10
    assert result.tls_version is None


@pytest.mark.usefixtures("clean_tls_env")
@pytest.mark.parametrize("stack", DEFAULT_STACKS)
def test_default_trust_rejects_lab_root(lab: Lab, stack: str) -> None:
    target = parse_target(lab.scenario("good").target)
    result = asyncio.run(get_stack(stack).probe(target, ProbeSettings(timeout=10)))
    assert result.reason is Reason.UNKNOWN_ISSUER
    assert result.ok is False


@pytest.mark.usefixtures("clean_tls_env")
@pytest.mark.parametrize("stack", DEFAULT_STACKS)
def test_closed_port_is_connect(stack: str) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    target = parse_target(f"127.0.0.1:{port}")
    result = asyncio.run(get_stack(stack).probe(target, ProbeSettings(timeout=5)))
    assert result.reason is Reason.CONNECT
