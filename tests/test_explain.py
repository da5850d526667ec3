"""Explanations: one sentence per disagreeing stack that names the cause."""

from __future__ import annotations

import asyncio
import datetime as dt
import importlib.metadata
import json
from typing import Any

import certifi
import pytest
from cli_run import (
    check_json,
    clean_env,
    explanation_of,
    results_by_stack,
    run_comparer,
)

from comparer.chain import build_context, fetch_served_chain, read_trust_anchors
from comparer.explain import explain_report, host_security_level, they
from comparer.lab import Lab
from comparer.model import ProbeResult, Reason, TargetReport
from comparer.stacks import get_stack
from comparer.stacks.base import ProbeSettings
from comparer.targets import parse_target

pytestmark = pytest.mark.usefixtures("clean_tls_env")

NOW = dt.datetime.now(dt.timezone.utc)


def checked(lab: Lab, name: str, stacks: str) -> dict[str, Any]:
    """Return the JSON row of one scenario checked with the lab bundle."""
    _, document = check_json(
        "--ca-file",
        str(lab.ca_bundle),
        "--stacks",
        stacks,
        lab.scenario(name).target,
    )
    row: dict[str, Any] = document["targets"][0]
    return row


# --- trust stores and the variables that choose them --------------------------------


def test_certifi_lacks_internal_root(lab: Lab) -> None:
    bundle = str(lab.system_plus_internal)
    env = clean_env(SSL_CERT_FILE=bundle)
    _, document = check_json(lab.scenario("internal-root").target, env=env)
    (row,) = document["targets"]
    explanation = explanation_of(row, "requests")
    text = explanation["text"]
    assert explanation["cause"] == "environment"
    assert len(row["explanations"]) == 1
    assert f"certifi {certifi.__version__}" in text
    assert "lacks the root 'comparer lab internal root" in text
    assert f"SSL_CERT_FILE={bundle}, which has it" in text
    assert f"requests ignores SSL_CERT_FILE: set REQUESTS_CA_BUNDLE={bundle}" in text


def test_requests_bundle_too_leaves_nothing_to_explain(lab: Lab) -> None:
    bundle = str(lab.system_plus_internal)
    env = clean_env(SSL_CERT_FILE=bundle, REQUESTS_CA_BUNDLE=bundle)
    _, document = check_json(lab.scenario("internal-root").target, env=env)
    (row,) = document["targets"]
    assert row["agree"] is True
    assert row["explanations"] == []


def test_httpx_ignores_requests_bundle(lab: Lab) -> None:
    bundle = str(lab.ca_bundle)
    env = clean_env(REQUESTS_CA_BUNDLE=bundle)
    _, document = check_json(
        "--stacks", "requests,httpx", lab.scenario("good").target, env=env
    )
    text = explanation_of(document["targets"][0], "httpx")["text"]
    assert "httpx uses certifi" in text
    assert "lacks the root 'comparer lab root" in text
    assert f"requests uses REQUESTS_CA_BUNDLE={bundle}, which has it" in text
    assert f"httpx ignores REQUESTS_CA_BUNDLE: set SSL_CERT_FILE={bundle}" in text


def test_store_difference_without_variables(lab: Lab) -> None:
    # stdlib is given the bundle with --ca-file and requests keeps certifi: the
    # stores differ and no variable chose either of them.
    target = parse_target(lab.scenario("internal-root").target)
    with_bundle = ProbeSettings(ca_file=lab.system_plus_internal, timeout=10)
    default = ProbeSettings(timeout=10)

    async def probe() -> list[ProbeResult]:
        return [
            await get_stack("stdlib").probe(target, with_bundle),
            await get_stack("requests").probe(target, default),
        ]

    report = TargetReport(target=target, results=asyncio.run(probe()))
    served = asyncio.run(fetch_served_chain(target, timeout=10))
    anchors = {
        "stdlib": read_trust_anchors("stdlib", with_bundle),
        "requests": read_trust_anchors("requests", default),
    }
    context = build_context(target, served, anchors, at=NOW)
    (explanation,) = explain_report(report, context=context, stacks=[])
    assert explanation["stack"] == "requests"
    assert explanation["cause"] == "trust-store"
    assert "requests uses certifi" in explanation["text"]
    assert "which lacks the root 'comparer lab internal root" in explanation["text"]
    assert "stdlib uses --ca-file" in explanation["text"]
    assert "Set REQUESTS_CA_BUNDLE=" in explanation["text"]


# --- hostname rules, strict flags, security level, protocol, verifier rules ---------


def test_cn_fallback_names_urllib3(lab: Lab) -> None:
    row = checked(lab, "cn-only", "openssl,stdlib,requests,httpx,aiohttp")
    explanation = explanation_of(row, "requests")
    text = explanation["text"]
    assert explanation["cause"] == "hostname-rule"
    assert f"urllib3 {importlib.metadata.version('urllib3')}" in text
    assert "has no subjectAltName" in text
    assert "openssl, stdlib, httpx and aiohttp fall back to its subject CN" in text
    assert "Reissue the certificate with a subjectAltName for localhost" in text


def test_agreement_has_no_explanations(lab: Lab) -> None:
    row = checked(lab, "good", "openssl,stdlib,requests,stdlib-strict,cryptography")
    assert row["explanations"] == []


def test_strict_flag_names_missing_aki(lab: Lab) -> None:
    row = checked(lab, "no-aki", "openssl,stdlib,stdlib-strict")
    explanation = explanation_of(row, "stdlib-strict")
    text = explanation["text"]
    assert explanation["cause"] == "strict-flags"
    assert "VERIFY_X509_STRICT" in text
    assert "Python 3.13" in text
    assert "the leaf 'localhost'" in text
    assert "no Authority Key Identifier (verify code 85)" in text
    assert "openssl and stdlib verify without the flag" in text


def test_strict_flag_names_intermediate(lab: Lab) -> None:
    row = checked(lab, "ca-bc-not-critical", "openssl,stdlib,stdlib-strict")
    text = explanation_of(row, "stdlib-strict")["text"]
    assert "the intermediate 'comparer lab non-critical intermediate" in text
    assert "basicConstraints is not marked critical (verify code 89)" in text


def test_security_level_names_weak_key(lab: Lab) -> None:
    row = checked(lab, "rsa-1024-leaf", "openssl,stdlib,cryptography")
    explanation = explanation_of(row, "cryptography")
    text = explanation["text"]
    assert explanation["cause"] == "security-level"
    assert "RSA key of 1024 bits" in text
    assert f"OpenSSL at security level {host_security_level()}" in text
    assert "verify code 66" in text


def test_protocol_names_missing_handshake(lab: Lab) -> None:
    row = checked(lab, "tls1-only", "openssl,stdlib,cryptography")
    explanation = explanation_of(row, "cryptography")
    assert explanation["cause"] == "protocol-version"
    assert "without a handshake" in explanation["text"]
    assert "openssl and stdlib fail the handshake" in explanation["text"]
    assert "Enable TLS 1.2 or 1.3" in explanation["text"]


def test_verifier_rules_name_extension(lab: Lab) -> None:
    row = checked(lab, "no-aki", "openssl,stdlib,cryptography")
    explanation = explanation_of(row, "cryptography")
    assert explanation["cause"] == "rfc5280-rules"
    assert "Authority Key Identifier (2.5.29.35)" in explanation["text"]
    assert "openssl and stdlib accept it" in explanation["text"]


# --- output -------------------------------------------------------------------------


def test_table_prints_explanation(lab: Lab) -> None:
    done = run_comparer(
        "check", "--ca-file", str(lab.ca_bundle), lab.scenario("cn-only").target
    )
    text = " ".join(done.stdout.split())
    assert "requests (hostname-mismatch) reject" in text
    assert "urllib3" in text
    assert "fall back to its subject CN 'localhost'" in text


def test_demo_explains_each_disagreement() -> None:
    done = run_comparer("demo", "--json", "--timeout", "5")
    document = json.loads(done.stdout)
    rows = {t["label"]: t for t in document["targets"]}
    internal = next(t for label, t in rows.items() if label.startswith("internal-root"))
    cn_only = explanation_of(rows["cn-only"], "requests")
    env = explanation_of(internal, "requests")
    assert cn_only["cause"] == "hostname-rule"
    assert "subjectAltName" in cn_only["text"]
    assert env["cause"] == "environment"
    assert "certifi" in env["text"]
    assert "set REQUESTS_CA_BUNDLE=" in env["text"]
    assert "system-plus-internal.pem" in env["text"]
    assert results_by_stack(internal)["requests"]["reason"] == "unknown-issuer"
    assert internal["chain"]["paths"]


def test_they_agrees_with_count() -> None:
    httpx = ProbeResult(stack="httpx", ok=True, reason=Reason.OK)
    stdlib = ProbeResult(stack="stdlib", ok=True, reason=Reason.OK)
    image = ProbeResult(stack="stdlib", ok=True, reason=Reason.OK, where="image:x:1")
    assert they([httpx], "accept") == "httpx accepts"
    assert they([httpx, stdlib], "accept") == "httpx and stdlib accept"
    assert they([httpx, stdlib, image], "try") == "httpx, stdlib and stdlib@x:1 try"
