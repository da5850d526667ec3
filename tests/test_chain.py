"""The served chain, each store's path, served-chain findings and expiry warnings."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import json
import os
import socket
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from cli_run import check_json, run_comparer
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from comparer.chain import (
    ChainContext,
    build_context,
    chain_json,
    fetch_served_chain,
    read_trust_anchors,
)
from comparer.chain_checks import expiry_warnings, served_chain_findings
from comparer.lab import Lab
from comparer.lab.scenarios import AIA_CA_ISSUERS_URL
from comparer.model import Reason
from comparer.stacks.base import ProbeSettings
from comparer.targets import parse_target

pytestmark = pytest.mark.usefixtures("clean_tls_env")

NOW = dt.datetime.now(dt.timezone.utc)

# Scenario -> the finding codes its served chain must produce, and nothing else.
FINDINGS: dict[str, set[str]] = {
    "good": set(),
    "self-signed-leaf": set(),
    "untrusted-root": set(),
    "missing-intermediate": {"missing-intermediate"},
    "missing-intermediate-aia": {"missing-intermediate"},
    "wrong-order": {"wrong-order"},
    "root-included": {"root-included"},
    "extra-certificates": {"duplicate", "unrelated-certificate"},
    "expired-cross-root": {"expired-cross-certificate"},
    "expired-intermediate": {"expired-on-path"},
    "client-auth-eku": {"leaf-usage"},
}


def context_for(
    lab: Lab,
    name: str,
    *,
    stacks: Sequence[str] = ("openssl", "stdlib", "requests"),
    ca_file: Path | None = None,
) -> ChainContext:
    """Read a scenario's served chain and build each stack's path, in-process."""
    target = parse_target(lab.scenario(name).target)
    settings = ProbeSettings(ca_file=ca_file, timeout=10)
    served = asyncio.run(fetch_served_chain(target, timeout=10))
    anchors = {stack: read_trust_anchors(stack, settings) for stack in stacks}
    return build_context(target, served, anchors, at=NOW)


def fingerprint(der: bytes) -> str:
    """Return the SHA-256 fingerprint in the colon form comparer prints."""
    return hashlib.sha256(der).digest().hex(":").upper()


def lab_root(lab: Lab, text: str) -> x509.Certificate:
    """Return the lab root whose subject contains `text`."""
    roots = x509.load_pem_x509_certificates(lab.ca_bundle.read_bytes())
    return next(r for r in roots if text in r.subject.rfc4514_string())


@contextlib.contextmanager
def private_bundle(directory: Path, *certificates: x509.Certificate) -> Iterator[Path]:
    """Write a 0600 PEM bundle and remove it when the block ends."""
    path = directory / "bundle.pem"
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        for certificate in certificates:
            handle.write(certificate.public_bytes(serialization.Encoding.PEM))
    try:
        yield path
    finally:
        path.unlink()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# --- the served chain ---------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["good", "wrong-order", "extra-certificates", "missing-intermediate"]
)
def test_served_chain_as_sent(lab: Lab, name: str) -> None:
    context = context_for(lab, name, ca_file=lab.ca_bundle)
    read = [entry.fingerprint for entry in context.served.certificates]
    sent = [fingerprint(der) for der in lab.scenario(name).served_chain]
    assert context.served.error is None
    assert read == sent


def test_served_chain_of_closed_port() -> None:
    target = parse_target(f"127.0.0.1:{closed_port()}")
    served = asyncio.run(fetch_served_chain(target, timeout=5))
    assert served.certificates == ()
    assert served.reason is Reason.CONNECT
    assert served.error


def test_chain_json_describes_each_certificate(lab: Lab) -> None:
    document = chain_json(context_for(lab, "good", ca_file=lab.ca_bundle))
    leaf, intermediate = document["served"]
    assert leaf["position"] == 0
    assert leaf["role"] == "leaf"
    assert intermediate["role"] == "intermediate"
    assert "OU=good" in leaf["subject"]
    assert leaf["issuer"] == intermediate["subject"]
    assert leaf["key_type"] == "EC secp256r1"
    assert leaf["key_bits"] == 256
    assert leaf["signature_algorithm"] == "ecdsa-with-SHA256"
    assert 88 <= leaf["days_left"] <= 90
    assert dt.datetime.fromisoformat(leaf["not_after"]) > NOW
    assert len(leaf["sha256"].split(":")) == 32
    assert int(leaf["serial"], 16) > 0


# --- paths to an anchor -------------------------------------------------------------


def test_path_ends_at_lab_root(lab: Lab) -> None:
    context = context_for(lab, "good", ca_file=lab.ca_bundle)
    path = context.paths["stdlib"]
    root = lab_root(lab, "lab root")
    assert path.complete
    assert path.anchor is not None
    assert path.anchor.certificate == root
    assert [context.position(e) for e in path.certificates] == [0, 1]


def test_path_without_lab_root_is_incomplete(lab: Lab) -> None:
    context = context_for(lab, "good", stacks=("requests",))
    path = context.paths["requests"]
    assert not path.complete
    assert path.problem is not None
    assert "comparer lab root" in path.problem
    assert "certifi" in path.problem


def test_path_prefers_store_over_expired_cross_certificate(lab: Lab) -> None:
    context = context_for(lab, "expired-cross-root", ca_file=lab.ca_bundle)
    path = context.paths["openssl"]
    assert [context.position(e) for e in path.certificates] == [0, 1]
    assert path.anchor is not None
    assert path.anchor.certificate.not_valid_after_utc > NOW


def test_path_follows_cross_certificate_without_new_root(
    lab: Lab, tmp_path: Path
) -> None:
    expired = lab_root(lab, "expired root")
    with private_bundle(tmp_path, expired) as bundle:
        context = context_for(lab, "expired-cross-root", ca_file=bundle)
    path = context.paths["openssl"]
    assert [context.position(e) for e in path.certificates] == [0, 1, 2]
    assert path.anchor is not None
    assert path.anchor.certificate == expired


# --- findings -----------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(FINDINGS))
def test_served_chain_findings(lab: Lab, name: str) -> None:
    findings = served_chain_findings(context_for(lab, name, ca_file=lab.ca_bundle))
    assert {item["code"] for item in findings} == FINDINGS[name]


def test_missing_intermediate_names_aia_url(lab: Lab) -> None:
    context = context_for(lab, "missing-intermediate-aia", ca_file=lab.ca_bundle)
    (finding,) = served_chain_findings(context)
    assert finding["aia_ca_issuers"] == [AIA_CA_ISSUERS_URL]
    assert AIA_CA_ISSUERS_URL in finding["text"]
    assert "Chrome and the macOS and Windows verifiers" in finding["text"]
    assert "never" in finding["text"]
    assert "comparer lab intermediate" in finding["text"]


def test_missing_intermediate_without_aia(lab: Lab) -> None:
    context = context_for(lab, "missing-intermediate", ca_file=lab.ca_bundle)
    (finding,) = served_chain_findings(context)
    assert finding["aia_ca_issuers"] == []
    assert "no AIA caIssuers URL" in finding["text"]


def test_missing_intermediate_in_store_is_no_finding(lab: Lab, tmp_path: Path) -> None:
    intermediate = x509.load_der_x509_certificate(lab.scenario("good").served_chain[1])
    with private_bundle(tmp_path, intermediate) as bundle:
        context = context_for(lab, "missing-intermediate", ca_file=bundle)
    assert served_chain_findings(context) == []


def test_expired_cross_certificate_finding(lab: Lab) -> None:
    context = context_for(lab, "expired-cross-root", ca_file=lab.ca_bundle)
    (finding,) = served_chain_findings(context)
    assert finding["position"] == 2
    assert "comparer lab root" in finding["subject"]
    assert "comparer lab expired root" in finding["text"]
    assert "OpenSSL 1.0.x" in finding["text"]


def test_extra_certificates_positions(lab: Lab) -> None:
    context = context_for(lab, "extra-certificates", ca_file=lab.ca_bundle)
    by_code = {item["code"]: item for item in served_chain_findings(context)}
    assert by_code["duplicate"]["position"] == 2
    assert by_code["unrelated-certificate"]["position"] == 3
    assert "untrusted root" in by_code["unrelated-certificate"]["subject"]


def test_wrong_order_lists_positions(lab: Lab) -> None:
    context = context_for(lab, "wrong-order", ca_file=lab.ca_bundle)
    (finding,) = served_chain_findings(context)
    assert finding["order"] == [0, 2, 1]


def test_leaf_usage_names_client_auth(lab: Lab) -> None:
    context = context_for(lab, "client-auth-eku", ca_file=lab.ca_bundle)
    (finding,) = served_chain_findings(context)
    assert "clientAuth" in finding["text"]
    assert "serverAuth" in finding["text"]


# --- expiry warnings ----------------------------------------------------------------


def test_warnings_name_intermediate_and_root(lab: Lab) -> None:
    context = context_for(lab, "root-expires-soon", ca_file=lab.ca_bundle)
    warnings = expiry_warnings(context, ["openssl"], warn_days=30)
    by_role = {item["role"]: item for item in warnings}
    assert set(by_role) == {"leaf", "intermediate", "root"}
    assert "expiring intermediate" in by_role["intermediate"]["subject"]
    assert "expiring root" in by_role["root"]["subject"]
    assert by_role["root"]["position"] is None
    assert by_role["root"]["days_left"] in (19, 20)
    assert "expiring root" in by_role["root"]["text"]
    assert "root" in by_role["root"]["text"]


def test_warnings_respect_warn_days(lab: Lab) -> None:
    context = context_for(lab, "root-expires-soon", ca_file=lab.ca_bundle)
    assert expiry_warnings(context, ["openssl"], warn_days=10) == []


def test_root_warns_only_for_verified_path(lab: Lab) -> None:
    context = context_for(lab, "root-expires-soon", ca_file=lab.ca_bundle)
    roles = {item["role"] for item in expiry_warnings(context, [], warn_days=30)}
    assert roles == {"leaf", "intermediate"}


def test_no_warnings_for_good(lab: Lab) -> None:
    context = context_for(lab, "good", ca_file=lab.ca_bundle)
    assert expiry_warnings(context, ["openssl"], warn_days=30) == []


# --- the command line ---------------------------------------------------------------


def test_check_warns_while_every_stack_verifies(lab: Lab) -> None:
    target = lab.scenario("root-expires-soon").target
    code, document = check_json("--ca-file", str(lab.ca_bundle), target)
    (row,) = document["targets"]
    roles = {item["role"]: item for item in row["warnings"]}
    assert code == 0
    assert all(result["ok"] for result in row["results"])
    assert "expiring root" in roles["root"]["subject"]
    assert "expiring intermediate" in roles["intermediate"]["subject"]
    assert document["settings"]["warn_days"] == 30


def test_fail_on_warnings_exits_one(lab: Lab) -> None:
    target = lab.scenario("root-expires-soon").target
    code, _ = check_json("--ca-file", str(lab.ca_bundle), "--fail-on-warnings", target)
    assert code == 1


def test_fail_on_warnings_without_warnings(lab: Lab) -> None:
    target = lab.scenario("good").target
    code, document = check_json(
        "--ca-file", str(lab.ca_bundle), "--fail-on-warnings", target
    )
    assert document["targets"][0]["warnings"] == []
    assert code == 0


def test_check_json_has_chain_and_findings(lab: Lab) -> None:
    target = lab.scenario("wrong-order").target
    _, document = check_json("--ca-file", str(lab.ca_bundle), target)
    (row,) = document["targets"]
    chain = row["chain"]
    assert len(chain["served"]) == 3
    assert chain["error"] is None
    (path,) = chain["paths"]
    assert set(path["stacks"]) == {"openssl", "stdlib", "requests", "httpx", "aiohttp"}
    assert path["complete"] is True
    assert path["anchor"]["source"] == "store"
    assert [step["position"] for step in path["path"]] == [0, 2, 1, None]
    assert [f["code"] for f in row["findings"]] == ["wrong-order"]


def test_table_prints_warnings_and_findings(lab: Lab) -> None:
    done = run_comparer(
        "check",
        "--ca-file",
        str(lab.ca_bundle),
        lab.scenario("root-expires-soon").target,
        lab.scenario("missing-intermediate").target,
    )
    lines = done.stdout.splitlines()
    assert any(line.startswith("⚠ ") and "expiring root" in line for line in lines)
    assert any(
        line.startswith("• ") and "without the intermediate" in line for line in lines
    )


def test_chain_command_tree(lab: Lab) -> None:
    done = run_comparer(
        "chain", "--ca-file", str(lab.ca_bundle), lab.scenario("good").target
    )
    assert done.returncode == 0, done.stderr
    assert "2 certificates served" in done.stdout
    assert "#1 intermediate" in done.stdout
    assert "paths to a trust anchor" in done.stdout
    assert "✓ #0 localhost → #1 comparer lab intermediate" in done.stdout


def test_chain_command_json(lab: Lab) -> None:
    done = run_comparer(
        "chain", "--json", "--stacks", "requests", lab.scenario("good").target
    )
    document = json.loads(done.stdout)
    (row,) = document["targets"]
    (path,) = row["chain"]["paths"]
    assert done.returncode == 0
    assert path["stacks"] == ["requests"]
    assert path["complete"] is False
    assert "certifi" in path["store"]


def test_chain_command_unreadable_exits_one() -> None:
    done = run_comparer("chain", f"127.0.0.1:{closed_port()}")
    assert done.returncode == 1
    assert "could not be read" in done.stdout


def test_check_help_documents_options() -> None:
    done = run_comparer("check", "--help")
    for option in ("--warn-days", "--fail-on-warnings", "--at"):
        assert option in done.stdout
    assert "do not change the exit status" in " ".join(done.stdout.split())
