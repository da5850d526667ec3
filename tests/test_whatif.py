"""What-if stacks (stdlib-strict, cryptography) and verdicts as of another date."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import socket

import pytest
from cli_run import check_json, run_comparer
from cryptography import x509

from comparer.lab import Lab
from comparer.model import ProbeResult, Reason
from comparer.stacks import DEFAULT_STACKS, STACK_MODULES, get_stack
from comparer.stacks.base import ProbeSettings
from comparer.targets import parse_target
from comparer.whatif import parse_at

pytestmark = pytest.mark.usefixtures("clean_tls_env")

ALL_HOST_STACKS = "openssl,stdlib,requests,httpx,aiohttp,stdlib-strict,cryptography"

# What cryptography's verifier concludes on each scenario (cryptography 50).
CRYPTOGRAPHY_VERDICTS = {
    "good": Reason.OK,
    "wrong-order": Reason.OK,
    "expired-cross-root": Reason.OK,
    "expired-leaf": Reason.EXPIRED,
    "expired-root": Reason.EXPIRED,
    "not-yet-valid-leaf": Reason.NOT_YET_VALID,
    "untrusted-root": Reason.UNKNOWN_ISSUER,
    "missing-intermediate": Reason.UNKNOWN_ISSUER,
    "hostname-mismatch": Reason.HOSTNAME_MISMATCH,
    "cn-only": Reason.HOSTNAME_MISMATCH,
    "sha1-intermediate": Reason.WEAK_CRYPTO,
    "no-aki": Reason.INVALID_CERTIFICATE,
    "client-auth-eku": Reason.INVALID_CERTIFICATE,
}


def probe(lab: Lab, scenario: str, stack: str) -> ProbeResult:
    target = parse_target(lab.scenario(scenario).target)
    settings = ProbeSettings(ca_file=lab.ca_bundle, timeout=10)
    return asyncio.run(get_stack(stack).probe(target, settings))


def test_what_if_stacks_are_not_default() -> None:
    for name in ("stdlib-strict", "cryptography"):
        assert name in STACK_MODULES
        assert name not in DEFAULT_STACKS


# --- stdlib-strict ------------------------------------------------------------------


def test_stdlib_strict_rejects_missing_aki(lab: Lab) -> None:
    result = probe(lab, "no-aki", "stdlib-strict")
    assert result.reason is Reason.INVALID_CERTIFICATE
    assert result.verify_code == 85
    assert result.stack == "stdlib-strict"


def test_stdlib_accepts_missing_aki(lab: Lab) -> None:
    assert probe(lab, "no-aki", "stdlib").ok


def test_stdlib_strict_rejects_non_critical_constraints(lab: Lab) -> None:
    result = probe(lab, "ca-bc-not-critical", "stdlib-strict")
    assert result.verify_code == 89


def test_stdlib_strict_accepts_good(lab: Lab) -> None:
    result = probe(lab, "good", "stdlib-strict")
    assert result.ok
    assert "VERIFY_X509_STRICT" in (result.reproduce or "")


def test_stdlib_strict_info_names_flags(lab: Lab) -> None:
    info = get_stack("stdlib-strict").info(ProbeSettings(ca_file=lab.ca_bundle))
    assert info.name == "stdlib-strict"
    assert "VERIFY_X509_STRICT | VERIFY_X509_PARTIAL_CHAIN" in (info.version or "")
    assert info.facts["verify_flags"] == [
        "VERIFY_X509_STRICT",
        "VERIFY_X509_PARTIAL_CHAIN",
    ]


# --- cryptography -------------------------------------------------------------------


@pytest.mark.parametrize("scenario", sorted(CRYPTOGRAPHY_VERDICTS))
def test_cryptography_verdict(lab: Lab, scenario: str) -> None:
    result = probe(lab, scenario, "cryptography")
    expected = CRYPTOGRAPHY_VERDICTS[scenario]
    assert result.reason is expected, result.detail
    assert result.ok is (expected is Reason.OK)
    assert "--ca-file" in (result.trust or "")


def test_cryptography_default_store_rejects_lab(lab: Lab) -> None:
    target = parse_target(lab.scenario("good").target)
    stack = get_stack("cryptography")
    result = asyncio.run(stack.probe(target, ProbeSettings(timeout=10)))
    assert result.reason is Reason.UNKNOWN_ISSUER


def test_cryptography_closed_port() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    target = parse_target(f"127.0.0.1:{port}")
    stack = get_stack("cryptography")
    result = asyncio.run(stack.probe(target, ProbeSettings(timeout=5)))
    assert result.reason is Reason.CONNECT


# --- --at ---------------------------------------------------------------------------


def at_date(lab: Lab, scenario: str, days: int) -> str:
    """Return the date `days` days after the scenario's leaf expires."""
    leaf = x509.load_der_x509_certificate(lab.scenario(scenario).served_chain[0])
    return (leaf.not_valid_after_utc + dt.timedelta(days=days)).isoformat()


def test_at_after_root_expiry_expires_every_stack(lab: Lab) -> None:
    target = lab.scenario("root-expires-soon").target
    code, document = check_json(
        "--ca-file",
        str(lab.ca_bundle),
        "--stacks",
        ALL_HOST_STACKS,
        "--at",
        at_date(lab, "root-expires-soon", 1),
        target,
    )
    (row,) = document["targets"]
    reasons = {r["stack"]: r["reason"] for r in row["results"]}
    assert code == 1
    assert reasons == dict.fromkeys(ALL_HOST_STACKS.split(","), "expired")
    assert row["warnings"] == []


def test_at_before_root_expiry_keeps_every_stack(lab: Lab) -> None:
    target = lab.scenario("root-expires-soon").target
    code, document = check_json(
        "--ca-file",
        str(lab.ca_bundle),
        "--stacks",
        ALL_HOST_STACKS,
        "--at",
        at_date(lab, "root-expires-soon", -2),
        target,
    )
    (row,) = document["targets"]
    assert code == 0
    assert all(result["ok"] for result in row["results"])
    assert {w["role"] for w in row["warnings"]} == {"leaf", "intermediate", "root"}


def test_at_labels_each_evaluation(lab: Lab) -> None:
    _, document = check_json(
        "--ca-file",
        str(lab.ca_bundle),
        "--stacks",
        "openssl,stdlib,requests",
        "--at",
        "2001-01-01",
        lab.scenario("good").target,
    )
    evaluation = document["settings"]["at"]["evaluation"]
    facts = {s["name"]: s["facts"]["evaluation"] for s in document["stacks"]}
    reasons = {r["reason"] for r in document["targets"][0]["results"]}
    assert document["settings"]["at"]["time"] == "2001-01-01T00:00:00+00:00"
    assert "openssl s_client -attime" in evaluation["host/openssl"]
    assert "offline with cryptography" in evaluation["host/stdlib"]
    assert "own store" in evaluation["host/requests"]
    assert facts == {
        "openssl": "s_client -attime",
        "stdlib": "offline",
        "requests": "offline",
    }
    assert reasons == {"not-yet-valid"}


def test_at_keeps_verdict_rules_disagree_on(lab: Lab) -> None:
    _, document = check_json(
        "--ca-file",
        str(lab.ca_bundle),
        "--stacks",
        "openssl,stdlib",
        "--at",
        (dt.date.today() + dt.timedelta(days=1)).isoformat(),
        lab.scenario("no-aki").target,
    )
    # cryptography rejects a leaf without AKI and the stdlib (Python < 3.13) does
    # not; a date that expires nothing must not turn that into a new verdict.
    results = {r["stack"]: r for r in document["targets"][0]["results"]}
    assert results["openssl"]["ok"] is True
    assert results["stdlib"]["ok"] is True
    assert "cryptography's rules differ from stdlib's" in results["stdlib"]["note"]
    assert "the date changes nothing" in results["stdlib"]["note"]
    assert document["targets"][0]["agree"] is True
    assert document["targets"][0]["explanations"] == []


def test_at_table_labels_stacks(lab: Lab) -> None:
    done = run_comparer(
        "check",
        "--ca-file",
        str(lab.ca_bundle),
        "--stacks",
        "openssl,stdlib",
        "--at",
        "2001-01-01",
        lab.scenario("good").target,
    )
    text = " ".join(done.stdout.split())
    assert "with openssl s_client -attime" in text
    assert "offline with cryptography" in text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2027-01-31", "2027-01-31T00:00:00+00:00"),
        ("2027-01-31T12:00:00Z", "2027-01-31T12:00:00+00:00"),
        ("2027-01-31T12:00:00+02:00", "2027-01-31T10:00:00+00:00"),
    ],
)
def test_parse_at(text: str, expected: str) -> None:
    assert parse_at(text).isoformat() == expected


@pytest.mark.parametrize("text", ["tomorrow", "1969-12-31", "2027-13-01"])
def test_parse_at_rejects(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        parse_at(text)


def test_invalid_at_exits_two() -> None:
    done = run_comparer("check", "--at", "soon", "localhost")
    assert done.returncode == 2
    assert "not an ISO date" in done.stderr
    assert done.stdout == ""
