"""Certificate authorities and leaf certificates for the lab, made with `cryptography`.

Every certificate is well-formed by default: CAs carry a critical basicConstraints,
keyUsage, Subject Key Identifier and Authority Key Identifier, so that each scenario
differs from the good chain only in the defect it is named after.
"""

from __future__ import annotations

import datetime
import functools
import ipaddress
import os
import shutil
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
PublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey
Extension = tuple[x509.ExtensionType, bool]

ORGANIZATION = "comparer lab"
LOCALHOST_SANS: tuple[x509.GeneralName, ...] = (
    x509.DNSName("localhost"),
    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
    x509.IPAddress(ipaddress.ip_address("::1")),
)
SERVER_AUTH = (ExtendedKeyUsageOID.SERVER_AUTH,)


class PkiError(Exception):
    """A certificate could not be made. The message names the step and the remedy."""


@dataclass(frozen=True)
class Authority:
    """A certificate authority: its certificate and the key it signs with."""

    certificate: x509.Certificate
    key: PrivateKey

    @property
    def name(self) -> x509.Name:
        """The subject name, which is the issuer name of what this CA signs."""
        return self.certificate.subject


def new_ec_key() -> ec.EllipticCurvePrivateKey:
    """Generate a P-256 key, which takes well under a millisecond."""
    return ec.generate_private_key(ec.SECP256R1())


def new_rsa_key(bits: int) -> rsa.RSAPrivateKey:
    """Generate an RSA key, taking sizes above 4096 bits from a per-process cache."""
    if bits > 4096:
        # An 8192-bit key takes seconds to generate, so one key serves every Lab
        # started in this process.
        return _cached_rsa_key(bits)
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


@functools.lru_cache(maxsize=2)
def _cached_rsa_key(bits: int) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def make_name(common_name: str, unit: str | None = None) -> x509.Name:
    """Build a subject name in the lab's organization."""
    attributes = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION)]
    if unit is not None:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, unit))
    attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    return x509.Name(attributes)


def _key_identifier(public_key: PublicKey) -> x509.SubjectKeyIdentifier:
    return x509.SubjectKeyIdentifier.from_public_key(public_key)


def _authority_key_identifier(issuer: Authority) -> x509.AuthorityKeyIdentifier:
    ski = issuer.certificate.extensions.get_extension_for_class(
        x509.SubjectKeyIdentifier
    )
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski.value)


def _ca_extensions(
    public_key: PublicKey,
    *,
    bc_critical: bool = True,
    path_length: int | None = None,
) -> list[Extension]:
    key_usage = x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=True,
        crl_sign=True,
        encipher_only=False,
        decipher_only=False,
    )
    return [
        (x509.BasicConstraints(ca=True, path_length=path_length), bc_critical),
        (key_usage, True),
        (_key_identifier(public_key), False),
    ]


def _leaf_key_usage(public_key: PublicKey) -> x509.KeyUsage:
    # RSA key exchange in TLS 1.2 and earlier encrypts to the leaf key.
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=isinstance(public_key, rsa.RSAPublicKey),
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )


def _sign(
    *,
    subject: x509.Name,
    public_key: PublicKey,
    issuer_name: x509.Name,
    signing_key: PrivateKey,
    not_before: datetime.datetime,
    not_after: datetime.datetime,
    extensions: Iterable[Extension],
) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
    )
    for extension, critical in extensions:
        builder = builder.add_extension(extension, critical=critical)
    return builder.sign(signing_key, hashes.SHA256())


def make_root(
    common_name: str,
    *,
    not_before: datetime.datetime,
    not_after: datetime.datetime,
) -> Authority:
    """Make a self-signed root CA with a fresh P-256 key."""
    key = new_ec_key()
    name = make_name(common_name)
    certificate = _sign(
        subject=name,
        public_key=key.public_key(),
        issuer_name=name,
        signing_key=key,
        not_before=not_before,
        not_after=not_after,
        extensions=_ca_extensions(key.public_key()),
    )
    return Authority(certificate, key)


def make_intermediate(
    common_name: str,
    issuer: Authority,
    *,
    not_before: datetime.datetime,
    not_after: datetime.datetime,
    bc_critical: bool = True,
    name_constraints: x509.NameConstraints | None = None,
) -> Authority:
    """Make an intermediate CA signed by `issuer` with SHA-256."""
    key = new_ec_key()
    extensions = _ca_extensions(key.public_key(), bc_critical=bc_critical)
    extensions.append((_authority_key_identifier(issuer), False))
    if name_constraints is not None:
        extensions.append((name_constraints, True))
    certificate = _sign(
        subject=make_name(common_name),
        public_key=key.public_key(),
        issuer_name=issuer.name,
        signing_key=issuer.key,
        not_before=not_before,
        not_after=not_after,
        extensions=extensions,
    )
    return Authority(certificate, key)


def make_leaf(
    issuer: Authority,
    key: PrivateKey,
    *,
    not_before: datetime.datetime,
    not_after: datetime.datetime,
    common_name: str = "localhost",
    unit: str | None = None,
    sans: Sequence[x509.GeneralName] | None = LOCALHOST_SANS,
    with_aki: bool = True,
    extended_key_usage: Sequence[x509.ObjectIdentifier] = SERVER_AUTH,
    extra: Iterable[Extension] = (),
) -> x509.Certificate:
    """Make an end-entity certificate, without a SAN extension if `sans` is None."""
    public_key = key.public_key()
    extensions: list[Extension] = [
        (x509.BasicConstraints(ca=False, path_length=None), True),
        (_leaf_key_usage(public_key), True),
        (x509.ExtendedKeyUsage(list(extended_key_usage)), False),
        (_key_identifier(public_key), False),
    ]
    if with_aki:
        extensions.append((_authority_key_identifier(issuer), False))
    if sans is not None:
        extensions.append((x509.SubjectAlternativeName(list(sans)), False))
    extensions.extend(extra)
    return _sign(
        subject=make_name(common_name, unit),
        public_key=public_key,
        issuer_name=issuer.name,
        signing_key=issuer.key,
        not_before=not_before,
        not_after=not_after,
        extensions=extensions,
    )


def make_self_signed_leaf(
    key: PrivateKey,
    *,
    not_before: datetime.datetime,
    not_after: datetime.datetime,
    unit: str | None = None,
) -> x509.Certificate:
    """Make a self-signed end-entity certificate for localhost (CA:FALSE)."""
    name = make_name("localhost", unit)
    public_key = key.public_key()
    extensions: list[Extension] = [
        (x509.BasicConstraints(ca=False, path_length=None), True),
        (_leaf_key_usage(public_key), True),
        (x509.ExtendedKeyUsage(list(SERVER_AUTH)), False),
        (_key_identifier(public_key), False),
        (x509.SubjectAlternativeName(list(LOCALHOST_SANS)), False),
    ]
    return _sign(
        subject=name,
        public_key=public_key,
        issuer_name=name,
        signing_key=key,
        not_before=not_before,
        not_after=not_after,
        extensions=extensions,
    )


_SHA1_EXTENSIONS = """\
[intermediate]
basicConstraints = critical, CA:TRUE
keyUsage = critical, digitalSignature, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
"""


def make_sha1_intermediate(
    common_name: str,
    issuer: Authority,
    *,
    days: int,
    workdir: Path,
) -> Authority:
    """Make an intermediate CA whose signature by `issuer` uses SHA-1.

    `cryptography` 46 and later refuse to sign with SHA-1, so the `openssl x509 -req`
    command signs it. The issuer key is written to `workdir` (0600) for that command
    only and removed right after. The certificate is valid from now for `days` days.
    """
    openssl = shutil.which("openssl")
    if openssl is None:
        raise PkiError(
            "openssl command not found; install OpenSSL to sign the SHA-1 intermediate"
        )
    key = new_ec_key()
    request = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(make_name(common_name))
        .sign(key, hashes.SHA256())
    )
    paths = {
        "csr": workdir / "sha1-request.pem",
        "ca": workdir / "sha1-issuer.pem",
        "ca_key": workdir / "sha1-issuer-key.pem",
        "ext": workdir / "sha1-extensions.cnf",
        "out": workdir / "sha1-intermediate.pem",
    }
    try:
        write_private(paths["csr"], request.public_bytes(serialization.Encoding.PEM))
        write_private(paths["ca"], pem_certificates([issuer.certificate]))
        write_private(paths["ca_key"], pem_private_key(issuer.key))
        write_private(paths["ext"], _SHA1_EXTENSIONS.encode())
        write_private(paths["out"], b"")  # so openssl -out keeps mode 0600
        command = [
            openssl,
            "x509",
            "-req",
            "-sha1",
            "-in",
            str(paths["csr"]),
            "-CA",
            str(paths["ca"]),
            "-CAkey",
            str(paths["ca_key"]),
            "-set_serial",
            str(x509.random_serial_number()),
            "-days",
            str(days),
            "-extfile",
            str(paths["ext"]),
            "-extensions",
            "intermediate",
            "-out",
            str(paths["out"]),
        ]
        completed = subprocess.run(  # noqa: S603 - fixed argument list, no shell
            command,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=30,
            check=False,
        )
        if completed.returncode != 0:
            error = completed.stderr.decode(errors="replace").strip().splitlines()
            last = error[-1] if error else f"exit status {completed.returncode}"
            raise PkiError(f"openssl x509 -req -sha1 failed: {last}")
        certificate = x509.load_pem_x509_certificate(paths["out"].read_bytes())
    finally:
        for path in paths.values():
            path.unlink(missing_ok=True)
    return Authority(certificate, key)


def write_private(path: Path, data: bytes) -> None:
    """Write `data` to a new file that only the owner can read (mode 0600)."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(data)


def pem_certificates(certificates: Iterable[x509.Certificate]) -> bytes:
    """Return the certificates as concatenated PEM blocks."""
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certificates)


def pem_private_key(key: PrivateKey) -> bytes:
    """Return the key as unencrypted PKCS#8 PEM, for a 0600 file only."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
