"""A server that comparer did not start: `openssl s_server` with a chain built here."""

from __future__ import annotations

import datetime
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

NOW = datetime.datetime.now(datetime.timezone.utc)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _issue(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None,
    *,
    ca: bool,
    not_after: datetime.datetime,
) -> x509.Certificate:
    issuer_name, issuer_key = issuer or (_name(subject), key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - datetime.timedelta(days=10))
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
    )
    if not ca:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False
        )
    return builder.sign(issuer_key, hashes.SHA256())


def _pem(*certs: x509.Certificate) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


@pytest.fixture
def s_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """Serve root -> intermediate -> expired leaf with `openssl s_server`."""
    root_key, inter_key, leaf_key = (
        ec.generate_private_key(ec.SECP256R1()) for _ in "abc"
    )
    root = _issue(
        "external root",
        root_key,
        None,
        ca=True,
        not_after=NOW + datetime.timedelta(days=365),
    )
    inter = _issue(
        "external intermediate",
        inter_key,
        (root.subject, root_key),
        ca=True,
        not_after=NOW + datetime.timedelta(days=365),
    )
    leaf = _issue(
        "localhost",
        leaf_key,
        (inter.subject, inter_key),
        ca=False,
        not_after=NOW - datetime.timedelta(days=2),
    )
    (tmp_path / "leaf.pem").write_bytes(_pem(leaf))
    (tmp_path / "chain.pem").write_bytes(_pem(inter))
    (tmp_path / "root.pem").write_bytes(_pem(root))
    key = tmp_path / "leaf.key"
    key.write_bytes(
        leaf_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    os.chmod(key, 0o600)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen(
        [
            "openssl",
            "s_server",
            "-accept",
            f"127.0.0.1:{port}",
            "-www",
            "-quiet",
            "-cert",
            str(tmp_path / "leaf.pem"),
            "-key",
            str(key),
            "-cert_chain",
            str(tmp_path / "chain.pem"),
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        yield f"localhost:{port}", tmp_path / "root.pem"
    finally:
        server.kill()
        server.wait()


@pytest.mark.usefixtures("clean_tls_env")
def test_expired_leaf_on_s_server(s_server: tuple[str, Path]) -> None:
    target, root = s_server
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "comparer",
            "check",
            "--json",
            "--ca-file",
            str(root),
            target,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    results = json.loads(done.stdout)["targets"][0]["results"]
    assert len(results) == 5
    for result in results:
        assert result["reason"] == "expired", result
        assert result["verify_code"] == 10


@pytest.mark.usefixtures("clean_tls_env")
def test_wrong_anchor_on_s_server(s_server: tuple[str, Path], tmp_path: Path) -> None:
    target, _ = s_server
    other_key = ec.generate_private_key(ec.SECP256R1())
    other = _issue(
        "unrelated root",
        other_key,
        None,
        ca=True,
        not_after=NOW + datetime.timedelta(days=30),
    )
    bundle = tmp_path / "other.pem"
    bundle.write_bytes(_pem(other))
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "comparer",
            "check",
            "--json",
            "--ca-file",
            str(bundle),
            target,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    results = json.loads(done.stdout)["targets"][0]["results"]
    assert {r["reason"] for r in results} == {"unknown-issuer"}
