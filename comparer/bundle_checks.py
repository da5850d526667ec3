"""Checks on parsed certificates: validity, strength, CA status and duplicates."""

from __future__ import annotations

import datetime as dt
import enum

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa

from comparer.bundle_model import CertificateEntry, Finding, Severity
from comparer.bundle_names import canonical_name

# OpenSSL at security level 2, Debian's default since buster, rejects RSA and DSA
# keys under 2048 bits and elliptic curves under 224 bits.
MIN_RSA_BITS = 2048
MIN_EC_BITS = 224

WEAK_SIGNATURES = {
    "1.2.840.113549.1.1.2": "MD2",
    "1.2.840.113549.1.1.3": "MD4",
    "1.2.840.113549.1.1.4": "MD5",
    "1.2.840.113549.1.1.5": "SHA-1",
    "1.3.14.3.2.29": "SHA-1",
    "1.2.840.10045.4.1": "SHA-1",
    "1.2.840.10040.4.3": "SHA-1",
}


class Role(enum.Enum):
    """What a certificate is for, which decides how much a weakness matters."""

    TRUST = "trust anchor"
    LEAF = "leaf"
    CHAIN = "chain certificate"


def format_date(moment: dt.datetime) -> str:
    """Return a UTC time as `2025-05-12 23:59:00 UTC`."""
    return moment.astimezone(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def signature_verifies(
    certificate: x509.Certificate, issuer: x509.Certificate
) -> bool | None:
    """Return whether the issuer's key verifies the signature, None if unsupported.

    `verify_directly_issued_by` would reject SHA-1 and MD5 signatures outright, so
    the key's own verify method is used, which still accepts SHA-1.
    """
    key = issuer.public_key()
    signature = certificate.signature
    data = certificate.tbs_certificate_bytes
    try:
        parameters = certificate.signature_algorithm_parameters
        if isinstance(key, rsa.RSAPublicKey):
            algorithm = certificate.signature_hash_algorithm
            if algorithm is None or parameters is None:
                return None
            key.verify(signature, data, parameters, algorithm)  # type: ignore[arg-type]
        elif isinstance(key, (ec.EllipticCurvePublicKey, dsa.DSAPublicKey)):
            # The parameters are ECDSA(hash) for EC keys and the hash for DSA keys.
            key.verify(signature, data, parameters)  # type: ignore[arg-type]
        elif isinstance(key, (ed25519.Ed25519PublicKey, ed448.Ed448PublicKey)):
            key.verify(signature, data)
        else:
            return None
    except InvalidSignature:
        return False
    except (UnsupportedAlgorithm, ValueError, TypeError):
        return None
    return True


def is_issued_by(certificate: x509.Certificate, issuer: x509.Certificate) -> bool:
    """Return whether `issuer` names and signed `certificate`, as OpenSSL matches."""
    if canonical_name(certificate.issuer) != canonical_name(issuer.subject):
        return False
    return signature_verifies(certificate, issuer) is not False


def is_self_signed(certificate: x509.Certificate) -> bool:
    """Return whether the certificate is its own issuer."""
    return is_issued_by(certificate, certificate)


def check_validity(
    entry: CertificateEntry, *, now: dt.datetime, warn_days: int
) -> list[Finding]:
    """Report a certificate that is expired, not yet valid, or expiring soon."""
    certificate = entry.certificate
    not_before = certificate.not_valid_before_utc
    not_after = certificate.not_valid_after_utc
    if now < not_before:
        return [
            entry.finding(
                Severity.ERROR,
                "not-yet-valid",
                f"not valid before {format_date(not_before)}",
            )
        ]
    if now > not_after:
        days = (now - not_after).days
        return [
            entry.finding(
                Severity.ERROR,
                "expired",
                f"expired on {format_date(not_after)} ({days} days ago)",
            )
        ]
    left = not_after - now
    if left <= dt.timedelta(days=warn_days):
        return [
            entry.finding(
                Severity.WARNING,
                "expiring",
                f"expires on {format_date(not_after)}, in {left.days} days",
            )
        ]
    return []


def _weak_key(certificate: x509.Certificate) -> str | None:
    key = certificate.public_key()
    if isinstance(key, rsa.RSAPublicKey) and key.key_size < MIN_RSA_BITS:
        return f"RSA key of {key.key_size} bits"
    if isinstance(key, dsa.DSAPublicKey) and key.key_size < MIN_RSA_BITS:
        return f"DSA key of {key.key_size} bits"
    if isinstance(key, ec.EllipticCurvePublicKey) and key.key_size < MIN_EC_BITS:
        return f"elliptic curve {key.curve.name} of {key.key_size} bits"
    return None


def check_strength(entry: CertificateEntry, role: Role) -> list[Finding]:
    """Report keys and signature algorithms that OpenSSL's security level 2 rejects.

    A weakness is an error in a server's chain, because clients reject the chain,
    and a warning in a trust bundle, where it only makes that anchor unusable.
    """
    findings = []
    severity = Severity.WARNING if role is Role.TRUST else Severity.ERROR
    weak_key = _weak_key(entry.certificate)
    if weak_key is not None:
        findings.append(
            entry.finding(
                severity,
                "weak-key",
                f"{weak_key}; OpenSSL at security level 2 rejects keys under "
                f"{MIN_RSA_BITS} bits (RSA, DSA) or {MIN_EC_BITS} bits (EC)",
            )
        )
    digest = WEAK_SIGNATURES.get(
        entry.certificate.signature_algorithm_oid.dotted_string
    )
    if digest is not None:
        findings.append(_weak_signature(entry, digest, severity))
    return findings


def _weak_signature(
    entry: CertificateEntry, digest: str, severity: Severity
) -> Finding:
    if is_self_signed(entry.certificate):
        return entry.finding(
            Severity.INFO,
            "root-signature",
            f"self-signed with {digest}, which does not weaken trust: clients do "
            "not check the signature of a trust anchor on itself",
        )
    return entry.finding(
        severity,
        "weak-signature",
        f"signed with {digest}; OpenSSL at security level 2 rejects it "
        "(CA signature digest algorithm too weak)",
    )


def _basic_constraints(certificate: x509.Certificate) -> x509.BasicConstraints | None:
    try:
        return certificate.extensions.get_extension_for_class(
            x509.BasicConstraints
        ).value
    except x509.ExtensionNotFound:
        return None


def is_ca(certificate: x509.Certificate) -> bool:
    """Return whether basicConstraints has CA:TRUE, or it is a self-signed v1 root."""
    constraints = _basic_constraints(certificate)
    if constraints is not None:
        return constraints.ca
    return certificate.version is x509.Version.v1 and is_self_signed(certificate)


def check_ca(entry: CertificateEntry, role: Role) -> list[Finding]:
    """Report a trust anchor or chain certificate that is not a CA."""
    if role is Role.LEAF or is_ca(entry.certificate):
        return []
    constraints = _basic_constraints(entry.certificate)
    reason = "CA:FALSE" if constraints is not None else "no basicConstraints extension"
    if role is Role.CHAIN:
        return [
            entry.finding(
                Severity.ERROR,
                "not-ca",
                f"chain certificate is not a CA ({reason}); clients reject the chain "
                "with 'invalid CA certificate'",
            )
        ]
    return [
        entry.finding(
            Severity.WARNING,
            "not-ca",
            f"not a CA ({reason}) in a trust bundle: it can only vouch for itself, "
            "as a pinned server certificate",
        )
    ]


def check_parse_notes(entry: CertificateEntry) -> list[Finding]:
    """Report what cryptography warned about while parsing, such as a zero serial."""
    findings = []
    if entry.serial <= 0:
        findings.append(
            entry.finding(
                Severity.INFO,
                "serial-not-positive",
                f"serial number {entry.serial} is not positive, which RFC 5280 "
                "forbids; OpenSSL accepts it, but cryptography warns that a future "
                "release will reject it",
            )
        )
    # The serial warning repeats for extensions that carry a serial number too.
    notes = sorted({n for n in entry.parse_notes if "serial number" not in n})
    findings += [
        entry.finding(Severity.INFO, "parse-warning", f"cryptography warns: {note}")
        for note in notes
    ]
    return findings


def find_duplicates(entries: list[CertificateEntry]) -> list[Finding]:
    """Report each certificate that appears again after its first occurrence."""
    first: dict[str, CertificateEntry] = {}
    findings = []
    for entry in entries:
        earlier = first.setdefault(entry.fingerprint, entry)
        if earlier is not entry:
            findings.append(
                entry.finding(
                    Severity.WARNING,
                    "duplicate",
                    f"duplicate of the certificate at {earlier.location}",
                )
            )
    return findings


def check_certificate(
    entry: CertificateEntry, *, role: Role, now: dt.datetime, warn_days: int
) -> list[Finding]:
    """Run every per-certificate check for a certificate in the given role."""
    return [
        *check_validity(entry, now=now, warn_days=warn_days),
        *check_strength(entry, role),
        *check_ca(entry, role),
        *check_parse_notes(entry),
    ]
