"""Tests of `comparer bundle` on generated files and on real CA bundles.

Every case runs `python -m comparer bundle` in a subprocess and reads its exit
status and JSON. Certificates are made with `cryptography` at test time, relative
to the real current time; SHA-1 signatures come from the `openssl` command line,
because cryptography refuses to sign with SHA-1.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
)
from cryptography.x509.oid import NameOID

REPO = Path(__file__).resolve().parent.parent
TEST_DATA = REPO / ".cache" / "test-data"
SYSTEM_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
OPENSSL = shutil.which("openssl")
NOW = dt.datetime.now(dt.timezone.utc)
DAY = dt.timedelta(days=1)

# Every test runs without SSL_CERT_FILE, REQUESTS_CA_BUNDLE, proxies or colour
# variables; the subprocesses inherit that environment.
pytestmark = pytest.mark.usefixtures("clean_tls_env")


# --- certificates ---------------------------------------------------------------


@dataclass
class Issued:
    """A certificate and its private key."""

    cert: x509.Certificate
    key: CertificateIssuerPrivateKeyTypes

    @property
    def pem(self) -> str:
        return self.cert.public_bytes(serialization.Encoding.PEM).decode()

    @property
    def key_pem(self) -> str:
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()

    @property
    def fingerprint(self) -> str:
        return self.cert.fingerprint(hashes.SHA256()).hex(":").upper()

    @property
    def subject(self) -> str:
        return self.cert.subject.rfc4514_string()


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "comparer tests"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def make_cert(
    common_name: str,
    *,
    issuer: Issued | None = None,
    ca: bool = True,
    key: CertificateIssuerPrivateKeyTypes | None = None,
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
) -> Issued:
    """Make a certificate signed by `issuer`, or self-signed without one."""
    key = key or ec.generate_private_key(ec.SECP256R1())
    subject = _name(common_name)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.cert.subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or NOW - DAY)
        .not_valid_after(not_after or NOW + 365 * DAY)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
        )
    )
    if not ca:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False
        )
    signer = issuer.key if issuer else key
    return Issued(builder.sign(signer, hashes.SHA256()), key)


@pytest.fixture(scope="module")
def pki() -> dict[str, Issued]:
    """A root, an intermediate under it, a leaf under that, and a stranger."""
    root = make_cert("Test Root")
    intermediate = make_cert("Test Intermediate", issuer=root)
    leaf = make_cert("localhost", issuer=intermediate, ca=False)
    other_root = make_cert("Other Root")
    return {
        "root": root,
        "intermediate": intermediate,
        "leaf": leaf,
        "other_root": other_root,
        "other_leaf": make_cert("other", issuer=other_root, ca=False),
    }


def openssl(*args: str, cwd: Path) -> None:
    """Run the openssl command line with an argument list; fail the test on error."""
    assert OPENSSL is not None, "the openssl command line is needed"
    completed = subprocess.run(  # noqa: S603 - fixed arguments and test paths
        [OPENSSL, *args], cwd=cwd, capture_output=True, text=True, check=False
    )
    assert completed.returncode == 0, completed.stderr


def write_key(path: Path, key: CertificateIssuerPrivateKeyTypes) -> Path:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)
    return path


def sha1_root(tmp_path: Path, common_name: str) -> Issued:
    """Make a self-signed root whose own signature is SHA-1, with openssl req."""
    key = ec.generate_private_key(ec.SECP256R1())
    key_file = write_key(tmp_path / "sha1-root.key", key)
    out = tmp_path / "sha1-root.pem"
    openssl(
        "req", "-x509", "-new", "-key", str(key_file), "-sha1", "-days", "365",
        "-subj", f"/O=comparer tests/CN={common_name}", "-out", str(out),
        cwd=tmp_path,
    )  # fmt: skip
    return Issued(x509.load_pem_x509_certificate(out.read_bytes()), key)


def sha1_signed(
    tmp_path: Path, common_name: str, issuer: Issued, *, ca: bool
) -> Issued:
    """Make a certificate that `issuer` signs with SHA-1, with openssl x509 -req."""
    key = ec.generate_private_key(ec.SECP256R1())
    request = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(_name(common_name))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    (tmp_path / "req.pem").write_bytes(request.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "issuer.pem").write_text(issuer.pem)
    write_key(tmp_path / "issuer.key", issuer.key)
    out = tmp_path / "sha1-signed.pem"
    openssl(
        "x509", "-req", "-in", "req.pem", "-CA", "issuer.pem", "-CAkey", "issuer.key",
        "-sha1", "-days", "365", "-set_serial", "4097", "-copy_extensions", "copyall",
        "-out", str(out),
        cwd=tmp_path,
    )  # fmt: skip
    return Issued(x509.load_pem_x509_certificate(out.read_bytes()), key)


# --- files with known line numbers ---------------------------------------------


class Layout:
    """Text assembled from parts, remembering the line where each part starts."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def add(self, text: str) -> int:
        start = len(self.lines) + 1
        self.lines.extend(text.splitlines())
        return start

    def data(self, *, newline: str = "\n", bom: bool = False) -> bytes:
        text = newline.join(self.lines) + newline
        return (b"\xef\xbb\xbf" if bom else b"") + text.encode()

    def write(self, path: Path, **options: Any) -> Path:
        path.write_bytes(self.data(**options))
        path.chmod(0o600)
        return path


# --- running the command -------------------------------------------------------


def run_bundle(
    *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `python -m comparer bundle ARGS` with warnings as errors."""
    environment = {**os.environ, **(env or {})}
    return subprocess.run(  # noqa: S603 - the test's own interpreter and arguments
        [sys.executable, "-W", "error", "-m", "comparer", "bundle", *args],
        capture_output=True,
        text=True,
        env=environment,
        cwd=REPO,
        timeout=120,
        check=False,
    )


def run_json(
    *args: str, env: dict[str, str] | None = None
) -> tuple[int, dict[str, Any]]:
    """Run with --json; return the exit status and the parsed stdout."""
    completed = run_bundle("--json", *args, env=env)
    assert completed.returncode in (0, 1), completed.stderr
    data = json.loads(completed.stdout)
    assert data["schema"] == 1
    return completed.returncode, data


def findings(data: dict[str, Any], *, report: int = 0) -> list[dict[str, Any]]:
    return list(data["reports"][report]["findings"])


def codes(data: dict[str, Any], severity: str | None = None) -> list[str]:
    return [
        f["code"]
        for f in findings(data)
        if severity is None or f["severity"] == severity
    ]


def only(data: dict[str, Any], code: str) -> dict[str, Any]:
    matches = [f for f in findings(data) if f["code"] == code]
    assert len(matches) == 1, findings(data)
    return matches[0]


def write_bundle(path: Path, *parts: Issued | str) -> Path:
    path.write_text("".join(p if isinstance(p, str) else p.pem for p in parts))
    path.chmod(0o600)
    return path


# --- clean input and accepted variations ----------------------------------------


def test_clean_bundle_exits_0(tmp_path: Path, pki: dict[str, Issued]) -> None:
    bundle = write_bundle(tmp_path / "ca.pem", pki["root"], pki["other_root"])
    status, data = run_json(str(bundle))
    assert status == 0
    assert data["reports"][0]["kind"] == "trust"
    assert data["reports"][0]["certificates"] == 2
    assert findings(data) == []


@pytest.mark.parametrize(
    ("newline", "bom"), [("\r\n", False), ("\n", True), ("\r\n", True)]
)
def test_crlf_and_bom_are_not_damage(
    tmp_path: Path, pki: dict[str, Issued], newline: str, bom: bool
) -> None:
    layout = Layout()
    layout.add(pki["root"].pem)
    layout.add(pki["other_root"].pem)
    bundle = layout.write(tmp_path / "ca.pem", newline=newline, bom=bom)
    status, data = run_json(str(bundle))
    assert status == 0
    assert data["reports"][0]["certificates"] == 2
    assert findings(data) == []


def test_bom_in_middle_of_concatenation(tmp_path: Path, pki: dict[str, Issued]) -> None:
    data = b"\xef\xbb\xbf" + pki["root"].pem.encode()
    data += b"\xef\xbb\xbf" + pki["other_root"].pem.encode()
    (tmp_path / "ca.pem").write_bytes(data)
    status, report = run_json(str(tmp_path / "ca.pem"))
    assert status == 0
    assert report["reports"][0]["certificates"] == 2


def test_comments_and_text_are_not_errors(
    tmp_path: Path, pki: dict[str, Issued]
) -> None:
    layout = Layout()
    layout.add("# Issuer: CN=Test Root\n# Label: test")
    layout.add(pki["root"].pem)
    text_line = layout.add("subject=CN = Other Root\n-- end of the first part --")
    layout.add(pki["other_root"].pem)
    status, data = run_json(str(layout.write(tmp_path / "ca.pem")))
    assert status == 0
    note = only(data, "text-outside-blocks")
    assert note["severity"] == "info"
    assert note["line"] == text_line


def test_der_certificate(tmp_path: Path, pki: dict[str, Issued]) -> None:
    path = tmp_path / "root.der"
    path.write_bytes(pki["root"].cert.public_bytes(serialization.Encoding.DER))
    status, data = run_json(str(path))
    assert status == 0
    assert data["reports"][0]["certificates"] == 1


def test_expired_der_has_no_line(tmp_path: Path) -> None:
    old = make_cert("Old DER Root", not_before=NOW - 90 * DAY, not_after=NOW - DAY)
    path = tmp_path / "old.der"
    path.write_bytes(old.cert.public_bytes(serialization.Encoding.DER))
    status, data = run_json(str(path))
    assert status == 1
    finding = only(data, "expired")
    assert finding["line"] is None
    assert finding["file"] == str(path)
    assert finding["sha256"] == old.fingerprint


# --- damaged PEM -----------------------------------------------------------------


def test_stray_base64_between_blocks(tmp_path: Path, pki: dict[str, Issued]) -> None:
    layout = Layout()
    layout.add(pki["root"].pem)
    body = pki["other_root"].pem.splitlines()[1:-1]
    stray = layout.add("\n".join(body[:3]))
    layout.add(pki["other_root"].pem)
    status, data = run_json(str(layout.write(tmp_path / "ca.pem")))
    assert status == 1
    finding = only(data, "unparsable")
    assert finding["severity"] == "error"
    assert finding["line"] == stray
    assert data["reports"][0]["certificates"] == 2


def test_truncated_base64(tmp_path: Path, pki: dict[str, Issued]) -> None:
    layout = Layout()
    layout.add(pki["root"].pem)
    lines = pki["other_root"].pem.splitlines()
    lines[-2] = lines[-2][:-3]
    begin = layout.add("\n".join(lines))
    status, data = run_json(str(layout.write(tmp_path / "ca.pem")))
    assert status == 1
    finding = only(data, "unparsable")
    assert finding["line"] == begin
    assert "base64" in finding["message"]
    assert data["reports"][0]["certificates"] == 1


def test_truncated_der_inside_pem(tmp_path: Path, pki: dict[str, Issued]) -> None:
    lines = pki["root"].pem.splitlines()
    del lines[2]  # a whole 64-character line: the base64 still decodes
    layout = Layout()
    layout.add(pki["other_root"].pem)
    begin = layout.add("\n".join(lines))
    status, data = run_json(str(layout.write(tmp_path / "ca.pem")))
    assert status == 1
    finding = only(data, "unparsable")
    assert finding["line"] == begin
    assert "truncated" in finding["message"]


def test_invalid_base64_character(tmp_path: Path, pki: dict[str, Issued]) -> None:
    lines = pki["root"].pem.splitlines()
    lines[3] = lines[3][:10] + "!" + lines[3][11:]
    layout = Layout()
    begin = layout.add("\n".join(lines))
    status, data = run_json(str(layout.write(tmp_path / "ca.pem")))
    assert status == 1
    assert only(data, "unparsable")["line"] == begin + 3


@pytest.mark.parametrize(
    "header",
    [
        "-----BEGIN CERTIFICATE----",
        "----BEGIN CERTIFICATE-----",
        "-----BEGIN CERTIFICATE",
        "  -----BEGIN CERTIFICATE-----",
        "-----BEGIN CERTIFICATES-----",
    ],
)
def test_wrong_header(tmp_path: Path, pki: dict[str, Issued], header: str) -> None:
    lines = pki["root"].pem.splitlines()
    lines[0] = header
    if header.endswith("CERTIFICATES-----"):
        lines[-1] = "-----END CERTIFICATES-----"
    layout = Layout()
    layout.add(pki["other_root"].pem)
    begin = layout.add("\n".join(lines))
    layout.add(pki["intermediate"].pem)
    status, data = run_json(str(layout.write(tmp_path / "ca.pem")))
    assert status == 1
    assert only(data, "unparsable")["line"] == begin
    assert data["reports"][0]["certificates"] == 2


def test_missing_end_before_next_begin(tmp_path: Path, pki: dict[str, Issued]) -> None:
    layout = Layout()
    begin = layout.add("\n".join(pki["root"].pem.splitlines()[:-1]))
    layout.add(pki["other_root"].pem)
    status, data = run_json(str(layout.write(tmp_path / "ca.pem")))
    assert status == 1
    assert only(data, "unparsable")["line"] == begin
    assert data["reports"][0]["certificates"] == 1


def test_missing_end_at_end_of_file(tmp_path: Path, pki: dict[str, Issued]) -> None:
    layout = Layout()
    layout.add(pki["other_root"].pem)
    begin = layout.add("\n".join(pki["root"].pem.splitlines()[:-4]))
    status, data = run_json(str(layout.write(tmp_path / "ca.pem")))
    assert status == 1
    assert only(data, "unparsable")["line"] == begin


def test_end_label_mismatch(tmp_path: Path, pki: dict[str, Issued]) -> None:
    lines = pki["root"].pem.splitlines()
    lines[-1] = "-----END PRIVATE KEY-----"
    layout = Layout()
    begin = layout.add("\n".join(lines))
    status, data = run_json(str(layout.write(tmp_path / "ca.pem")))
    assert status == 1
    assert only(data, "unparsable")["line"] == begin + len(lines) - 1


def test_end_without_begin(tmp_path: Path, pki: dict[str, Issued]) -> None:
    layout = Layout()
    layout.add(pki["root"].pem)
    orphan = layout.add("-----END CERTIFICATE-----")
    status, data = run_json(str(layout.write(tmp_path / "ca.pem")))
    assert status == 1
    assert only(data, "unparsable")["line"] == orphan


def test_empty_file_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "empty.pem").write_bytes(b"")
    status, data = run_json(str(tmp_path / "empty.pem"))
    assert status == 1
    assert codes(data, "error") == ["no-certificates"]


def test_csr_in_trust_bundle(tmp_path: Path, pki: dict[str, Issued]) -> None:
    request = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(_name("request"))
        .sign(ec.generate_private_key(ec.SECP256R1()), hashes.SHA256())
    )
    layout = Layout()
    layout.add(pki["root"].pem)
    csr_line = layout.add(request.public_bytes(serialization.Encoding.PEM).decode())
    status, data = run_json(str(layout.write(tmp_path / "ca.pem")))
    assert status == 0
    finding = only(data, "not-certificate")
    assert finding["severity"] == "warning"
    assert finding["line"] == csr_line


# --- certificate findings ----------------------------------------------------------


def test_expired_and_not_yet_valid(tmp_path: Path, pki: dict[str, Issued]) -> None:
    expired = make_cert("Expired Root", not_before=NOW - 99 * DAY, not_after=NOW - DAY)
    future = make_cert("Future Root", not_before=NOW + 10 * DAY)
    layout = Layout()
    layout.add(pki["root"].pem)
    expired_line = layout.add(expired.pem)
    future_line = layout.add(future.pem)
    status, data = run_json(str(layout.write(tmp_path / "ca.pem")))
    assert status == 1
    finding = only(data, "expired")
    assert finding["line"] == expired_line
    assert finding["subject"] == expired.subject
    assert finding["sha256"] == expired.fingerprint
    assert only(data, "not-yet-valid")["line"] == future_line


def test_at_moves_the_clock(tmp_path: Path) -> None:
    expired = make_cert("Expired Root", not_before=NOW - 99 * DAY, not_after=NOW - DAY)
    bundle = write_bundle(tmp_path / "ca.pem", expired)
    earlier = (NOW - 50 * DAY).date().isoformat()
    status, data = run_json("--at", earlier, "--warn-days", "0", str(bundle))
    assert status == 0
    assert findings(data) == []


def test_expiring_within_warn_days(tmp_path: Path) -> None:
    soon = make_cert("Soon Root", not_after=NOW + 10 * DAY)
    bundle = write_bundle(tmp_path / "ca.pem", soon)
    status, data = run_json(str(bundle))
    assert status == 0
    assert only(data, "expiring")["severity"] == "warning"
    status, data = run_json("--warn-days", "5", str(bundle))
    assert status == 0
    assert findings(data) == []


def test_duplicate(tmp_path: Path, pki: dict[str, Issued]) -> None:
    layout = Layout()
    first = layout.add(pki["root"].pem)
    layout.add(pki["other_root"].pem)
    second = layout.add(pki["root"].pem)
    path = layout.write(tmp_path / "ca.pem")
    status, data = run_json(str(path))
    assert status == 0
    finding = only(data, "duplicate")
    assert finding["line"] == second
    assert f"{path}:{first}" in finding["message"]


def test_non_ca_in_trust_bundle(tmp_path: Path, pki: dict[str, Issued]) -> None:
    layout = Layout()
    layout.add(pki["root"].pem)
    leaf_line = layout.add(pki["leaf"].pem)
    status, data = run_json(str(layout.write(tmp_path / "ca.pem")))
    assert status == 0
    finding = only(data, "not-ca")
    assert finding["severity"] == "warning"
    assert finding["line"] == leaf_line


def test_weak_rsa_key_in_trust_bundle(tmp_path: Path, pki: dict[str, Issued]) -> None:
    weak = make_cert("Weak Root", key=rsa.generate_private_key(65537, 1024))
    strong = make_cert("Strong Root", key=rsa.generate_private_key(65537, 2048))
    bundle = write_bundle(tmp_path / "ca.pem", strong, weak)
    status, data = run_json(str(bundle))
    assert status == 0
    finding = only(data, "weak-key")
    assert finding["severity"] == "warning"
    assert finding["subject"] == weak.subject
    assert "1024" in finding["message"]


@pytest.mark.skipif(OPENSSL is None, reason="needs the openssl command line")
def test_sha1_root_info_intermediate_warns(tmp_path: Path) -> None:
    root = sha1_root(tmp_path, "SHA1 Root")
    intermediate = sha1_signed(tmp_path, "SHA1 Intermediate", root, ca=True)
    layout = Layout()
    root_line = layout.add(root.pem)
    intermediate_line = layout.add(intermediate.pem)
    status, data = run_json(str(layout.write(tmp_path / "ca.pem")))
    assert status == 0
    info = only(data, "root-signature")
    assert info["severity"] == "info"
    assert info["line"] == root_line
    warning = only(data, "weak-signature")
    assert warning["severity"] == "warning"
    assert warning["line"] == intermediate_line


# --- server files ----------------------------------------------------------------


def haproxy_file(path: Path, key: Issued, *certs: Issued) -> Path:
    path.write_text(key.key_pem + "".join(c.pem for c in certs))
    path.chmod(0o600)
    return path


def test_server_file_complete(tmp_path: Path, pki: dict[str, Issued]) -> None:
    trust = write_bundle(tmp_path / "trust.pem", pki["root"])
    server = haproxy_file(
        tmp_path / "site.pem", pki["leaf"], pki["leaf"], pki["intermediate"]
    )
    status, data = run_json("--trust", str(trust), str(server))
    assert status == 0
    report = data["reports"][0]
    assert report["kind"] == "server"
    assert report["trust"] == str(trust)
    assert codes(data) == ["chain"]


def test_server_key_mismatch(tmp_path: Path, pki: dict[str, Issued]) -> None:
    trust = write_bundle(tmp_path / "trust.pem", pki["root"])
    server = haproxy_file(
        tmp_path / "site.pem", pki["other_leaf"], pki["leaf"], pki["intermediate"]
    )
    status, data = run_json("--trust", str(trust), str(server))
    assert status == 1
    finding = only(data, "key-mismatch")
    assert finding["severity"] == "error"
    assert finding["sha256"] == pki["leaf"].fingerprint
    assert finding["line"] == 6  # the PKCS#8 EC key takes lines 1-5


def test_server_key_belongs_to_later_cert(
    tmp_path: Path, pki: dict[str, Issued]
) -> None:
    trust = write_bundle(tmp_path / "trust.pem", pki["root"])
    server = haproxy_file(
        tmp_path / "site.pem", pki["leaf"], pki["intermediate"], pki["leaf"]
    )
    status, data = run_json("--trust", str(trust), str(server))
    assert status == 1
    assert "certificate #2" in only(data, "key-mismatch")["message"]


def test_server_chain_out_of_order(tmp_path: Path, pki: dict[str, Issued]) -> None:
    trust = write_bundle(tmp_path / "trust.pem", pki["root"])
    layout = Layout()
    layout.add(pki["leaf"].key_pem)
    layout.add(pki["leaf"].pem)
    root_line = layout.add(pki["root"].pem)
    layout.add(pki["intermediate"].pem)
    server = layout.write(tmp_path / "site.pem")
    status, data = run_json("--trust", str(trust), str(server))
    assert status == 0
    order = only(data, "chain-order")
    assert order["severity"] == "warning"
    assert "#1 -> #3 -> #2" in order["message"]
    assert only(data, "root-included")["line"] == root_line


def test_server_chain_incomplete(tmp_path: Path, pki: dict[str, Issued]) -> None:
    trust = write_bundle(tmp_path / "trust.pem", pki["root"])
    server = haproxy_file(tmp_path / "site.pem", pki["leaf"], pki["leaf"])
    status, data = run_json("--trust", str(trust), str(server))
    assert status == 1
    finding = only(data, "chain-incomplete")
    assert finding["sha256"] == pki["leaf"].fingerprint
    assert "Test Intermediate" in finding["message"]


def test_server_root_not_in_store(tmp_path: Path, pki: dict[str, Issued]) -> None:
    trust = write_bundle(tmp_path / "trust.pem", pki["other_root"])
    server = haproxy_file(
        tmp_path / "site.pem", pki["leaf"], pki["leaf"], pki["intermediate"]
    )
    status, data = run_json("--trust", str(trust), str(server))
    assert status == 1
    assert only(data, "chain-incomplete")["sha256"] == pki["intermediate"].fingerprint


def test_server_flag_without_key(tmp_path: Path, pki: dict[str, Issued]) -> None:
    trust = write_bundle(tmp_path / "trust.pem", pki["root"])
    chain = write_bundle(tmp_path / "chain.pem", pki["leaf"], pki["intermediate"])
    status, data = run_json("--server", "--trust", str(trust), str(chain))
    assert status == 0
    assert data["reports"][0]["kind"] == "server"
    # The twin: without --server the same file is a trust bundle with a leaf in it.
    status, data = run_json(str(chain))
    assert data["reports"][0]["kind"] == "trust"
    assert "not-ca" in codes(data)


def test_server_chain_against_stack_store(
    tmp_path: Path, pki: dict[str, Issued]
) -> None:
    server = haproxy_file(
        tmp_path / "site.pem", pki["leaf"], pki["leaf"], pki["intermediate"]
    )
    status, data = run_json("--trust", "stdlib", str(server))
    assert status == 1
    assert data["reports"][0]["trust"].startswith("stack:stdlib")
    assert "chain-incomplete" in codes(data, "error")


def test_weak_key_in_server_chain_is_error(
    tmp_path: Path, pki: dict[str, Issued]
) -> None:
    weak_leaf = make_cert(
        "localhost",
        issuer=pki["intermediate"],
        ca=False,
        key=rsa.generate_private_key(65537, 1024),
    )
    trust = write_bundle(tmp_path / "trust.pem", pki["root"])
    server = haproxy_file(
        tmp_path / "site.pem", weak_leaf, weak_leaf, pki["intermediate"]
    )
    status, data = run_json("--trust", str(trust), str(server))
    assert status == 1
    assert only(data, "weak-key")["severity"] == "error"


@pytest.mark.skipif(OPENSSL is None, reason="needs the openssl command line")
def test_sha1_leaf_in_server_file_is_error(
    tmp_path: Path, pki: dict[str, Issued]
) -> None:
    leaf = sha1_signed(tmp_path, "localhost", pki["intermediate"], ca=False)
    trust = write_bundle(tmp_path / "trust.pem", pki["root"])
    server = haproxy_file(tmp_path / "site.pem", leaf, leaf, pki["intermediate"])
    status, data = run_json("--trust", str(trust), str(server))
    assert status == 1
    assert only(data, "weak-signature")["severity"] == "error"
    assert "chain" in codes(data, "info")


def test_server_impostor_intermediate(tmp_path: Path, pki: dict[str, Issued]) -> None:
    # Same subject as the real intermediate, but another key: names alone would match.
    impostor = make_cert("Test Intermediate", issuer=pki["root"])
    trust = write_bundle(tmp_path / "trust.pem", pki["root"])
    server = haproxy_file(tmp_path / "site.pem", pki["leaf"], pki["leaf"], impostor)
    status, data = run_json("--trust", str(trust), str(server))
    assert status == 1
    assert only(data, "chain-incomplete")["sha256"] == pki["leaf"].fingerprint
    assert only(data, "unrelated-certificate")["sha256"] == impostor.fingerprint


def test_server_chain_to_expired_anchor(tmp_path: Path) -> None:
    old_root = make_cert(
        "Old Anchor", not_before=NOW - 900 * DAY, not_after=NOW - 10 * DAY
    )
    intermediate = make_cert("Cross Intermediate", issuer=old_root)
    leaf = make_cert("localhost", issuer=intermediate, ca=False)
    trust = write_bundle(tmp_path / "trust.pem", old_root)
    server = haproxy_file(tmp_path / "site.pem", leaf, leaf, intermediate)
    status, data = run_json("--trust", str(trust), str(server))
    assert status == 1
    finding = only(data, "chain-expired-anchor")
    assert finding["sha256"] == intermediate.fingerprint
    assert "Old Anchor" in finding["message"]


def test_server_encrypted_key(tmp_path: Path, pki: dict[str, Issued]) -> None:
    encrypted = pki["leaf"].key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret passphrase"),
    )
    trust = write_bundle(tmp_path / "trust.pem", pki["root"])
    server = tmp_path / "site.pem"
    server.write_text(encrypted.decode() + pki["leaf"].pem + pki["intermediate"].pem)
    status, data = run_json("--trust", str(trust), str(server))
    assert status == 0
    assert only(data, "key-encrypted")["line"] == 1
    assert "key-mismatch" not in codes(data)


# --- real bundles --------------------------------------------------------------


def certifi_wheel(version: str) -> Path:
    """Return the cached wheel; fail in CI, skip elsewhere, when it is missing."""
    found = sorted(TEST_DATA.glob(f"certifi-{version}-*.whl"))
    if found:
        return found[0]
    message = f"certifi {version} not in {TEST_DATA}; run scripts/fetch-test-data.sh"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


@pytest.mark.parametrize(
    ("version", "root", "expired_on"),
    [
        ("2020.4.5.1", "CN=AddTrust External CA Root", "2020-05-30"),
        ("2021.5.30", "CN=DST Root CA X3", "2021-09-30"),
    ],
)
def test_old_certifi_flags_expired_root(
    version: str, root: str, expired_on: str
) -> None:
    wheel = certifi_wheel(version)
    status, data = run_json(str(wheel))
    assert status == 1
    expired = [f for f in findings(data) if f["code"] == "expired"]
    flagged = [f for f in expired if f["subject"].startswith(root)]
    assert len(flagged) == 1, [f["subject"] for f in expired]
    assert expired_on in flagged[0]["message"]
    assert flagged[0]["file"] == f"{wheel}!certifi/cacert.pem"

    # The twin: a day before that root expired, it is only "expiring".
    day_before = (dt.date.fromisoformat(expired_on) - dt.timedelta(days=1)).isoformat()
    _status, data = run_json("--at", day_before, str(wheel))
    by_root = [f for f in findings(data) if (f["subject"] or "").startswith(root)]
    assert [f["code"] for f in by_root if f["severity"] != "info"] == ["expiring"]


def _expected_expired(path: Path) -> set[str]:
    """Fingerprints of the certificates in a PEM bundle that expired before now."""
    import warnings

    with warnings.catch_warnings():
        # Some real roots have serial number 0, which cryptography warns about.
        warnings.simplefilter("ignore")
        certificates = x509.load_pem_x509_certificates(path.read_bytes())
    now = dt.datetime.now(dt.timezone.utc)
    return {
        c.fingerprint(hashes.SHA256()).hex(":").upper()
        for c in certificates
        if c.not_valid_after_utc < now
    }


@pytest.mark.skipif(not SYSTEM_BUNDLE.exists(), reason="no system CA bundle")
def test_system_bundle_errors_are_expired_roots() -> None:
    completed = run_bundle("--json", str(SYSTEM_BUNDLE))
    data = json.loads(completed.stdout)
    errors = [f for f in findings(data) if f["severity"] == "error"]
    assert {f["code"] for f in errors} <= {"expired"}
    assert {f["sha256"] for f in errors} == _expected_expired(SYSTEM_BUNDLE)
    assert completed.returncode == (1 if errors else 0)
    assert not any(f["code"] == "unparsable" for f in findings(data))


def test_current_certifi_audit() -> None:
    import certifi

    completed = run_bundle("--json", certifi.where())
    data = json.loads(completed.stdout)
    errors = [f for f in findings(data) if f["severity"] == "error"]
    assert {f["sha256"] for f in errors} == _expected_expired(Path(certifi.where()))
    assert completed.returncode == (1 if errors else 0)
    warnings_ = [f for f in findings(data) if f["severity"] == "warning"]
    assert {f["code"] for f in warnings_} <= {"expiring"}


def test_hashed_directory_hashes_match_openssl() -> None:
    directory = Path("/etc/ssl/certs")
    if not any(directory.glob("*.0")):
        pytest.skip("no hashed system directory")
    status, data = run_json(str(directory))
    assert data["reports"][0]["certificates"] > 0
    assert "hash-mismatch" not in codes(data)
    assert "dangling-link" not in codes(data)


@pytest.mark.skipif(OPENSSL is None, reason="needs the openssl command line")
def test_hashed_directory_problems(tmp_path: Path, pki: dict[str, Issued]) -> None:
    certs = tmp_path / "certs"
    certs.mkdir()
    write_bundle(certs / "root.pem", pki["root"])
    write_bundle(certs / "other.pem", pki["other_root"])
    openssl("rehash", str(certs), cwd=tmp_path)
    status, data = run_json(str(certs))
    assert status == 0
    assert findings(data) == []
    assert data["reports"][0]["certificates"] == 2

    # Break it: a certificate under a wrong hash, one without a link, a dead link.
    link = next(
        p for p in certs.iterdir() if p.is_symlink() and p.resolve().name == "other.pem"
    )
    link.rename(certs / "00000000.0")
    write_bundle(certs / "unlinked.pem", pki["intermediate"])
    (certs / "11111111.0").symlink_to(certs / "gone.pem")
    status, data = run_json(str(certs))
    assert status == 1
    assert only(data, "hash-mismatch")["sha256"] == pki["other_root"].fingerprint
    assert only(data, "not-hashed")["sha256"] == pki["intermediate"].fingerprint
    assert only(data, "dangling-link")["file"] == str(certs / "11111111.0")


@pytest.mark.skipif(OPENSSL is None, reason="needs the openssl command line")
def test_subject_hash_of_awkward_names(tmp_path: Path) -> None:
    from comparer.bundle_names import subject_hash

    names = [
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "  Mixed   CASE\tName ")]),
        x509.Name(
            [
                x509.NameAttribute(NameOID.COUNTRY_NAME, "DE"),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Bäckerei Größe"),
                x509.NameAttribute(
                    NameOID.COMMON_NAME, "BMP Name", _type=x509.name._ASN1Type.BMPString
                ),
            ]
        ),
        x509.Name([]),
    ]
    for index, name in enumerate(names):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(index + 1)
            .not_valid_before(NOW - DAY)
            .not_valid_after(NOW + DAY)
            .sign(key, hashes.SHA256())
        )
        path = tmp_path / f"{index}.pem"
        path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        expected = subprocess.run(  # noqa: S603 - fixed arguments and a test path
            [str(OPENSSL), "x509", "-noout", "-subject_hash", "-in", str(path)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        assert subject_hash(name) == expected, name


def test_wheel_without_cacert_is_usage_error(tmp_path: Path) -> None:
    wheel = tmp_path / "fake-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("fake/__init__.py", "")
    completed = run_bundle(str(wheel))
    assert completed.returncode == 2
    assert str(wheel) in completed.stderr
    assert len(completed.stderr.strip().splitlines()) == 1


def test_missing_file_is_usage_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.pem"
    completed = run_bundle(str(missing))
    assert completed.returncode == 2
    assert completed.stdout == ""
    assert (
        completed.stderr.strip()
        == f"comparer: error: {missing}: file not found; check the path"
    )


def test_no_input_is_usage_error() -> None:
    completed = run_bundle()
    assert completed.returncode == 2
    assert "nothing to audit" in completed.stderr


def test_stack_store_is_audited(tmp_path: Path, pki: dict[str, Issued]) -> None:
    bundle = write_bundle(tmp_path / "ca.pem", pki["root"])
    status, data = run_json(
        "--stack", "requests", env={"REQUESTS_CA_BUNDLE": str(bundle)}
    )
    assert status == 0
    report = data["reports"][0]
    assert report["source"] == "stack:requests"
    assert report["path"] == str(bundle)
    assert report["certificates"] == 1
    # The twin: an expired root in the same variable makes the audit fail.
    old = make_cert("Old Root", not_before=NOW - 9 * DAY, not_after=NOW - DAY)
    write_bundle(bundle, pki["root"], old)
    status, data = run_json(
        "--stack", "requests", env={"REQUESTS_CA_BUNDLE": str(bundle)}
    )
    assert status == 1
    assert only(data, "expired")["subject"] == old.subject


# --- diff ----------------------------------------------------------------------


def _fingerprints(path: Path) -> set[str]:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        certificates = x509.load_pem_x509_certificates(path.read_bytes())
    return {c.fingerprint(hashes.SHA256()).hex(":").upper() for c in certificates}


@pytest.mark.skipif(not SYSTEM_BUNDLE.exists(), reason="no system CA bundle")
def test_diff_certifi_and_system_bundle() -> None:
    import certifi

    status, data = run_json("--diff", certifi.where(), str(SYSTEM_BUNDLE))
    a, b = _fingerprints(Path(certifi.where())), _fingerprints(SYSTEM_BUNDLE)
    only_a = {e["sha256"] for e in data["only_in_a"]}
    only_b = {e["sha256"] for e in data["only_in_b"]}
    changed_a = {pair["a"]["sha256"] for pair in data["changed"]}
    changed_b = {pair["b"]["sha256"] for pair in data["changed"]}
    assert only_a | changed_a == a - b
    assert only_b | changed_b == b - a
    assert data["common"] == len(a & b)
    assert status == (0 if a == b else 1)
    for entry in data["only_in_a"] + data["only_in_b"]:
        assert entry["subject"]
        assert dt.datetime.fromisoformat(entry["not_after"])


def test_diff_identical_and_different(tmp_path: Path, pki: dict[str, Issued]) -> None:
    a = write_bundle(tmp_path / "a.pem", pki["root"], pki["other_root"])
    b = write_bundle(tmp_path / "b.pem", pki["other_root"], pki["root"])
    status, data = run_json("--diff", str(a), str(b))
    assert status == 0
    assert data["only_in_a"] == data["only_in_b"] == data["changed"] == []
    write_bundle(b, pki["other_root"], pki["intermediate"])
    status, data = run_json("--diff", str(a), str(b))
    assert status == 1
    assert [e["sha256"] for e in data["only_in_a"]] == [pki["root"].fingerprint]
    assert [e["sha256"] for e in data["only_in_b"]] == [pki["intermediate"].fingerprint]


def test_diff_reissued_root(tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    old = make_cert("Reissued Root", key=key, not_after=NOW + 30 * DAY)
    new = make_cert("Reissued Root", key=key, not_after=NOW + 3000 * DAY)
    a = write_bundle(tmp_path / "a.pem", old)
    b = write_bundle(tmp_path / "b.pem", new)
    status, data = run_json("--diff", str(a), str(b))
    assert status == 1
    assert data["only_in_a"] == data["only_in_b"] == []
    assert data["changed"][0]["a"]["sha256"] == old.fingerprint
    assert data["changed"][0]["b"]["sha256"] == new.fingerprint


def test_diff_with_file_is_usage_error(tmp_path: Path, pki: dict[str, Issued]) -> None:
    a = write_bundle(tmp_path / "a.pem", pki["root"])
    completed = run_bundle("--diff", str(a), str(a), str(a))
    assert completed.returncode == 2


# --- output --------------------------------------------------------------------


def test_table_lists_findings(tmp_path: Path, pki: dict[str, Issued]) -> None:
    expired = make_cert("Expired Root", not_before=NOW - 99 * DAY, not_after=NOW - DAY)
    layout = Layout()
    layout.add(pki["root"].pem)
    line = layout.add(expired.pem)
    completed = run_bundle(str(layout.write(tmp_path / "ca.pem")))
    assert completed.returncode == 1
    assert f"line {line}" in completed.stdout
    assert "expired: expired on" in completed.stdout
    assert "1 error, 0 warnings" in completed.stdout
    assert "\x1b[" not in completed.stdout


def test_render_report_text() -> None:
    from rich.console import Console

    from comparer.bundle import BundleReport
    from comparer.bundle_model import Finding, Severity
    from comparer.commands.bundle import render_report

    def finding(severity: Severity, code: str, message: str, line: int) -> Finding:
        return Finding(
            severity, code, message, "ca.pem", line, "CN=Root", fingerprint="AB:CD"
        )

    report = BundleReport(
        source="ca.pem",
        path="ca.pem",
        kind="trust",
        certificates=2,
        findings=[
            finding(Severity.ERROR, "expired", "expired on 2020-05-30", 12),
            finding(Severity.WARNING, "duplicate", "duplicate of ca.pem:1", 30),
            finding(Severity.INFO, "root-signature", "self-signed with SHA-1", 1),
        ],
    )
    console = Console(width=72, record=True, color_system=None, file=io.StringIO())
    render_report(console, report, show_info=False)
    expected = """\
ca.pem: trust bundle, 2 certificates; 1 error, 1 warning, 1 info
┏━━━━━━━━━━┳━━━━━━━━━┳━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━┓
┃ severity ┃ where   ┃ finding                          ┃
┡━━━━━━━━━━╇━━━━━━━━━╇━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━┩
│ error    │ line 12 │ expired: expired on 2020-05-30   │
│          │         │ CN=Root                          │
│          │         │ sha256 AB:CD                     │
├──────────┼─────────┼──────────────────────────────────┤
│ warning  │ line 30 │ duplicate: duplicate of ca.pem:1 │
│          │         │ CN=Root                          │
│          │         │ sha256 AB:CD                     │
└──────────┴─────────┴──────────────────────────────────┘
  1 info finding not shown; add --info

"""
    assert console.export_text() == expected


def test_no_color_is_respected(tmp_path: Path) -> None:
    expired = make_cert("Expired Root", not_before=NOW - 99 * DAY, not_after=NOW - DAY)
    bundle = write_bundle(tmp_path / "ca.pem", expired)
    colored = run_bundle(str(bundle), env={"FORCE_COLOR": "1"})
    assert "\x1b[1;31m" in colored.stdout
    plain = run_bundle(str(bundle), env={"FORCE_COLOR": "1", "NO_COLOR": "1"})
    assert "\x1b[1;31m" not in plain.stdout
    assert "expired" in plain.stdout


def test_json_is_the_only_stdout(tmp_path: Path, pki: dict[str, Issued]) -> None:
    bundle = write_bundle(tmp_path / "ca.pem", pki["root"])
    completed = run_bundle("--json", str(bundle), env={"FORCE_COLOR": "1"})
    data = json.loads(completed.stdout)
    assert data["schema"] == 1
    assert data["counts"] == {"error": 0, "warning": 0, "info": 0}


# --- container images ------------------------------------------------------------

TEST_IMAGE = "comparer-test/bookworm:1"
DOCKER = shutil.which("docker")


@pytest.fixture(scope="module")
def docker() -> str:
    """Return the docker binary once the test image is there; fail in CI without it."""
    found = DOCKER is not None and (
        subprocess.run(  # noqa: S603 - fixed arguments
            [DOCKER, "image", "inspect", TEST_IMAGE], capture_output=True, check=False
        ).returncode
        == 0
    )
    if not found:
        message = (
            f"docker with image {TEST_IMAGE} is needed; run scripts/start-docker.sh "
            "and docker/build-test-images.sh"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    assert DOCKER is not None
    return DOCKER


def _image_bundle(docker: str, image: str) -> bytes:
    """Read the image's bundle with a plain `docker run`, independently of comparer."""
    return subprocess.run(  # noqa: S603 - fixed arguments and a test image
        [docker, "run", "--rm", "--network", "none", "--pull", "never", image,
         "cat", "/etc/ssl/certs/ca-certificates.crt"],
        capture_output=True,
        check=True,
        timeout=120,
    ).stdout  # fmt: skip


@pytest.mark.docker
def test_image_bundle_audit(docker: str, tmp_path: Path) -> None:
    bundle = tmp_path / "image-bundle.pem"
    bundle.write_bytes(_image_bundle(docker, TEST_IMAGE))
    status, data = run_json("--image", TEST_IMAGE, "--pull", "never")
    report = data["reports"][0]
    assert report["source"] == f"image:{TEST_IMAGE}"
    assert report["description"].startswith("/etc/ssl/certs/ca-certificates.crt")
    assert report["certificates"] == len(_fingerprints(bundle))
    errors = [f for f in findings(data) if f["severity"] == "error"]
    assert {f["sha256"] for f in errors} == _expected_expired(bundle)
    assert status == (1 if errors else 0)


@pytest.mark.docker
def test_image_diff_with_host(docker: str, tmp_path: Path) -> None:
    if not SYSTEM_BUNDLE.exists():
        pytest.skip("no system CA bundle")
    bundle = tmp_path / "image-bundle.pem"
    bundle.write_bytes(_image_bundle(docker, TEST_IMAGE))
    status, data = run_json(
        "--pull", "never", "--diff", f"image:{TEST_IMAGE}", str(SYSTEM_BUNDLE)
    )
    a, b = _fingerprints(bundle), _fingerprints(SYSTEM_BUNDLE)
    only_a = {e["sha256"] for e in data["only_in_a"]}
    only_a |= {pair["a"]["sha256"] for pair in data["changed"]}
    only_b = {e["sha256"] for e in data["only_in_b"]}
    only_b |= {pair["b"]["sha256"] for pair in data["changed"]}
    assert only_a == a - b
    assert only_b == b - a
    assert status == (0 if a == b else 1)


@pytest.fixture(scope="module")
def image_without_bundle(docker: str) -> Iterator[str]:
    """Commit a copy of the test image with every CA bundle path removed."""
    from comparer.bundle_sources import IMAGE_BUNDLE_PATHS

    tag = "comparer-test/no-bundle:bundle-test"
    name = f"comparer-bundle-test-{os.getpid()}"
    subprocess.run(  # noqa: S603 - fixed arguments and test names
        [docker, "run", "--name", name, "--network", "none", "--pull", "never",
         TEST_IMAGE, "rm", "-f", *IMAGE_BUNDLE_PATHS],
        capture_output=True, check=True, timeout=120,
    )  # fmt: skip
    try:
        subprocess.run(  # noqa: S603 - fixed arguments and test names
            [docker, "commit", name, tag], capture_output=True, check=True, timeout=120
        )
    finally:
        subprocess.run(  # noqa: S603 - fixed arguments and test names
            [docker, "rm", "--force", name], capture_output=True, check=False
        )
    yield tag
    subprocess.run(  # noqa: S603 - fixed arguments and test names
        [docker, "rmi", "--force", tag], capture_output=True, check=False
    )


@pytest.mark.docker
def test_image_without_bundle_is_usage_error(image_without_bundle: str) -> None:
    completed = run_bundle("--pull", "never", "--image", image_without_bundle)
    assert completed.returncode == 2
    assert image_without_bundle in completed.stderr
    assert "install ca-certificates" in completed.stderr


@pytest.mark.docker
def test_missing_image_is_usage_error(docker: str) -> None:
    completed = run_bundle("--pull", "never", "--image", "comparer-test/absent:0")
    assert completed.returncode == 2
    assert "comparer-test/absent:0" in completed.stderr


def test_image_reference_option_is_rejected() -> None:
    completed = run_bundle("--image=--privileged")
    assert completed.returncode == 2
    assert "starts with '-'" in completed.stderr
