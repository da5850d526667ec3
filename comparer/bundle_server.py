"""Checks on a server's certificate file: the key, the chain order and completeness.

A server file is what nginx's ssl_certificate or HAProxy's crt reads: the leaf first,
then the intermediates, and for HAProxy the private key in the same file. The
server sends the certificates in file order.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_der_private_key,
    load_pem_private_key,
)

from comparer.bundle_checks import format_date, is_issued_by, is_self_signed
from comparer.bundle_model import CertificateEntry, Finding, KeyBlock, Severity
from comparer.bundle_names import canonical_name


@dataclass
class TrustStore:
    """Trust anchors indexed by canonical subject, to find a chain's issuer.

    `label` names the store in messages, such as "stack:stdlib (/etc/ssl/certs)".
    """

    label: str
    entries: list[CertificateEntry]
    by_subject: dict[bytes, list[CertificateEntry]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        index: dict[bytes, list[CertificateEntry]] = defaultdict(list)
        for entry in self.entries:
            index[canonical_name(entry.certificate.subject)].append(entry)
        self.by_subject = dict(index)

    def issuers_of(self, entry: CertificateEntry) -> list[CertificateEntry]:
        """Return the anchors whose name and key match the certificate's issuer."""
        candidates = self.by_subject.get(canonical_name(entry.certificate.issuer), [])
        return [c for c in candidates if is_issued_by(entry.certificate, c.certificate)]

    def contains(self, entry: CertificateEntry) -> bool:
        """Return whether the store has a certificate with this name and key."""
        subject = canonical_name(entry.certificate.subject)
        key = _public_key_der(entry)
        return any(
            _public_key_der(candidate) == key
            for candidate in self.by_subject.get(subject, [])
        )


def _public_key_der(entry: CertificateEntry) -> bytes:
    return entry.certificate.public_key().public_bytes(
        Encoding.DER, PublicFormat.SubjectPublicKeyInfo
    )


def load_private_key(block: KeyBlock) -> tuple[PrivateKeyTypes | None, Finding | None]:
    """Load a key block; return the key, or None and a finding that explains why."""

    def problem(severity: Severity, code: str, message: str) -> Finding:
        return Finding(severity, code, message, file=block.file, line=block.line)

    if block.label == "OPENSSH PRIVATE KEY":
        return None, problem(
            Severity.ERROR,
            "key-format",
            "OpenSSH private key; TLS servers read PKCS#8 ('BEGIN PRIVATE KEY') or "
            "'BEGIN RSA/EC PRIVATE KEY' PEM; convert it with ssh-keygen -p -m PKCS8",
        )
    try:
        if block.pem is not None:
            return load_pem_private_key(block.pem, password=None), None
        if block.der is not None:
            return load_der_private_key(block.der, password=None), None
    except TypeError:
        # cryptography raises TypeError when a key is encrypted and no password given.
        return None, problem(
            Severity.WARNING,
            "key-encrypted",
            "the private key is encrypted, so whether it matches the leaf was not "
            "checked; the server needs the passphrase at start-up",
        )
    except (ValueError, UnsupportedAlgorithm) as exc:
        return None, problem(
            Severity.ERROR,
            "unparsable",
            f"{block.label} block does not parse as a private key: {exc}",
        )
    return None, None


def check_key(
    certificates: list[CertificateEntry], keys: list[KeyBlock]
) -> list[Finding]:
    """Check that the file's first private key belongs to its first certificate."""
    if not keys or not certificates:
        return []
    block = keys[0]
    findings = [
        Finding(
            Severity.WARNING,
            "extra-key",
            f"another private key after the one at line {block.line}; servers use "
            "the first key and ignore this one",
            file=extra.file,
            line=extra.line,
        )
        for extra in keys[1:]
    ]
    key, problem = load_private_key(block)
    if problem is not None:
        return [problem, *findings]
    if key is None:
        return findings

    public = key.public_key().public_bytes(
        Encoding.DER, PublicFormat.SubjectPublicKeyInfo
    )
    leaf = certificates[0]
    if _public_key_der(leaf) == public:
        return findings
    match = next((c for c in certificates[1:] if _public_key_der(c) == public), None)
    hint = (
        f"it belongs to certificate #{match.index} at {match.location}; move that "
        "certificate first"
        if match is not None
        else "no certificate in the file has this key; pair it with its certificate"
    )
    findings.insert(
        0,
        Finding(
            Severity.ERROR,
            "key-mismatch",
            f"the private key at line {block.line} does not match the leaf "
            f"(the first certificate, which the server sends); {hint}",
            file=leaf.file,
            line=leaf.line,
            subject=leaf.subject,
            fingerprint=leaf.fingerprint,
        ),
    )
    return findings


def build_chain(certificates: list[CertificateEntry]) -> list[CertificateEntry]:
    """Follow issuers from the first certificate through the others in the file."""
    chain = [certificates[0]]
    remaining = list(certificates[1:])
    current = certificates[0]
    while not is_self_signed(current.certificate):
        issuer = next(
            (c for c in remaining if is_issued_by(current.certificate, c.certificate)),
            None,
        )
        if issuer is None:
            break
        chain.append(issuer)
        remaining.remove(issuer)
        current = issuer
    return chain


def check_order(
    certificates: list[CertificateEntry], chain: list[CertificateEntry]
) -> list[Finding]:
    """Report chain certificates out of file order, and ones outside the chain."""
    findings = []
    positions = [entry.index for entry in chain]
    if positions != list(range(1, len(chain) + 1)):
        order = " -> ".join(f"#{p}" for p in positions)
        first_wrong = next(e for i, e in enumerate(chain, start=1) if e.index != i)
        findings.append(
            first_wrong.finding(
                Severity.WARNING,
                "chain-order",
                f"the chain runs {order} in file order; TLS 1.2 (RFC 5246) wants "
                "each certificate followed by its issuer, and the server sends the "
                "file order",
            )
        )
    in_chain = {id(entry) for entry in chain}
    for entry in certificates:
        if id(entry) not in in_chain:
            findings.append(
                entry.finding(
                    Severity.WARNING,
                    "unrelated-certificate",
                    "not part of the leaf's chain; the server sends it anyway",
                )
            )
    return findings


def check_anchor(
    chain: list[CertificateEntry], store: TrustStore, *, now: dt.datetime
) -> list[Finding]:
    """Report whether the chain reaches an anchor of the store or a root it sends."""
    top = chain[-1]
    if is_self_signed(top.certificate):
        return [_self_signed_top(chain, store)]

    anchors = store.issuers_of(top)
    if not anchors:
        issuer = top.certificate.issuer.rfc4514_string()
        return [
            top.finding(
                Severity.ERROR,
                "chain-incomplete",
                f"no issuer '{issuer}' in the file or in {store.label}: append the "
                "missing intermediate after this certificate",
            )
        ]
    valid = [a for a in anchors if a.certificate.not_valid_after_utc >= now]
    if not valid:
        expired = anchors[0]
        return [
            top.finding(
                Severity.ERROR,
                "chain-expired-anchor",
                f"the chain ends at '{expired.subject}' in {store.label}, which "
                f"expired on {format_date(expired.certificate.not_valid_after_utc)}",
            )
        ]
    path = " -> ".join(f"#{e.index}" for e in chain)
    return [
        top.finding(
            Severity.INFO,
            "chain",
            f"chain {path} ends at '{valid[0].subject}' in {store.label}",
        )
    ]


def _self_signed_top(chain: list[CertificateEntry], store: TrustStore) -> Finding:
    top = chain[-1]
    trusted = store.contains(top)
    if len(chain) == 1:
        if trusted:
            return top.finding(
                Severity.INFO,
                "chain",
                f"self-signed leaf, trusted directly by {store.label}",
            )
        return top.finding(
            Severity.ERROR,
            "chain-untrusted",
            f"self-signed leaf that {store.label} does not contain; clients reject "
            "it unless they trust this certificate itself",
        )
    if trusted:
        return top.finding(
            Severity.INFO,
            "root-included",
            f"the root is in the file, which is needless: clients use their own copy "
            f"from {store.label}, and RFC 8446 lets the server leave it out",
        )
    return top.finding(
        Severity.ERROR,
        "chain-untrusted",
        f"the chain ends at this root, which {store.label} does not contain",
    )


def check_server_file(
    certificates: list[CertificateEntry],
    keys: list[KeyBlock],
    store: TrustStore,
    *,
    now: dt.datetime,
) -> tuple[list[Finding], list[CertificateEntry]]:
    """Check key, order and anchor of a server file; return findings and the chain."""
    if not certificates:
        return [], []
    chain = build_chain(certificates)
    findings = [
        *check_key(certificates, keys),
        *check_order(certificates, chain),
        *check_anchor(chain, store, now=now),
    ]
    return findings, chain
