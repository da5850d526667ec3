"""Audit CA bundles and server certificate files, and compare two trust stores.

A trust bundle (a CA file, a hashed directory, a stack's or an image's store) gets
the per-certificate checks and a duplicate check. A server file, one with a private
key or audited with `server=True`, also gets the key, chain order and anchor checks
against a trust store.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from comparer.bundle_checks import (
    Role,
    check_certificate,
    find_duplicates,
    format_date,
)
from comparer.bundle_model import (
    CertificateEntry,
    Finding,
    OtherBlock,
    ParsedInput,
    Severity,
)
from comparer.bundle_server import TrustStore, check_server_file
from comparer.bundle_sources import LoadedSource

JSON_SCHEMA = 1

# DH parameters in the certificate file are read by HAProxy, so they belong there.
_SERVER_FILE_EXTRAS = frozenset(
    {"DH PARAMETERS", "X9.42 DH PARAMETERS", "EC PARAMETERS"}
)


@dataclass
class BundleReport:
    """The audit of one input.

    `kind` is "trust" or "server". `trust` names the store that a server file's
    chain was checked against, None for trust bundles. `description`
    names the store that a stack or image uses, None for files.
    """

    source: str
    path: str | None
    kind: str
    certificates: int
    findings: list[Finding] = field(default_factory=list)
    trust: str | None = None
    description: str | None = None

    def counts(self) -> dict[str, int]:
        """Return the number of findings per severity, every severity present."""
        counter = Counter(f.severity.value for f in self.findings)
        return {severity.value: counter[severity.value] for severity in Severity}

    @property
    def has_errors(self) -> bool:
        """Return whether any finding is an error."""
        return any(f.severity is Severity.ERROR for f in self.findings)

    def to_json(self) -> dict[str, Any]:
        """Return the JSON form of the report."""
        return {
            "source": self.source,
            "path": self.path,
            "description": self.description,
            "kind": self.kind,
            "certificates": self.certificates,
            "trust": self.trust,
            "counts": self.counts(),
            "findings": [f.to_json() for f in self.findings],
        }


def _other_block_finding(block: OtherBlock, kind: str) -> Finding:
    if kind == "server" and block.label in _SERVER_FILE_EXTRAS:
        severity, message = (
            Severity.INFO,
            f"{block.label} block; HAProxy reads it from the certificate file, "
            "other servers ignore it",
        )
    elif block.label == "X509 CRL":
        severity, message = (
            Severity.INFO,
            "a CRL, which takes effect only when the client turns on CRL checks",
        )
    else:
        severity, message = (
            Severity.WARNING,
            f"{block.label} block where certificates are expected; OpenSSL skips it",
        )
    return Finding(
        severity, "not-certificate", message, file=block.file, line=block.line
    )


def _key_in_trust_finding(parsed: ParsedInput) -> list[Finding]:
    return [
        Finding(
            Severity.ERROR,
            "private-key",
            "private key in a trust bundle: anyone who can read the bundle has it; "
            "remove it and replace the key",
            file=key.file,
            line=key.line,
        )
        for key in parsed.keys
    ]


def audit(
    loaded: LoadedSource,
    *,
    now: dt.datetime,
    warn_days: int,
    server: bool = False,
    store: TrustStore | None = None,
) -> BundleReport:
    """Audit one input as a trust bundle, or as a server file when it has a key.

    `store` is needed for a server file; a trust bundle ignores it. A private key
    in a stack's or image's store is reported rather than treated as a server file.
    """
    parsed = loaded.parsed
    is_server = (server or bool(parsed.keys)) and not loaded.label.startswith(
        ("stack:", "image:")
    )
    kind = "server" if is_server else "trust"
    report = BundleReport(
        source=loaded.label,
        path=loaded.path,
        kind=kind,
        certificates=len(parsed.certificates),
        findings=list(parsed.findings),
        description=loaded.description,
    )
    report.findings += [_other_block_finding(b, kind) for b in parsed.others]
    if is_server:
        _audit_server(report, parsed, store, now=now, warn_days=warn_days)
    else:
        report.findings += _key_in_trust_finding(parsed)
        for entry in parsed.certificates:
            report.findings += check_certificate(
                entry, role=Role.TRUST, now=now, warn_days=warn_days
            )
    report.findings += find_duplicates(parsed.certificates)
    _report_empty(report, parsed)
    report.findings.sort(key=_finding_order)
    return report


def _audit_server(
    report: BundleReport,
    parsed: ParsedInput,
    store: TrustStore | None,
    *,
    now: dt.datetime,
    warn_days: int,
) -> None:
    if store is None:
        raise ValueError("a server file needs a trust store")
    report.trust = store.label
    findings, chain = check_server_file(
        parsed.certificates, parsed.keys, store, now=now
    )
    report.findings += findings
    for entry in parsed.certificates:
        role = Role.LEAF if entry.index == 1 else Role.CHAIN
        report.findings += check_certificate(
            entry, role=role, now=now, warn_days=warn_days
        )


def _report_empty(report: BundleReport, parsed: ParsedInput) -> None:
    # Errors already found explain an input without certificates well enough.
    if parsed.certificates or report.has_errors:
        return
    report.findings.append(
        Finding(
            Severity.ERROR,
            "no-certificates",
            "no certificate could be read from this input",
            file=parsed.name,
        )
    )


def _finding_order(finding: Finding) -> tuple[int, str, int]:
    return (finding.severity.rank, finding.file or "", finding.line or 0)


@dataclass(frozen=True)
class StoreEntry:
    """A root in a store comparison: subject, SHA-256 fingerprint and notAfter."""

    subject: str
    fingerprint: str
    not_after: dt.datetime
    location: str

    @classmethod
    def of(cls, entry: CertificateEntry) -> StoreEntry:
        """Return the comparison entry of a parsed certificate."""
        return cls(
            subject=entry.subject,
            fingerprint=entry.fingerprint,
            not_after=entry.certificate.not_valid_after_utc,
            location=entry.location,
        )

    def to_json(self) -> dict[str, Any]:
        """Return the JSON form of the entry."""
        return {
            "subject": self.subject,
            "sha256": self.fingerprint,
            "not_after": self.not_after.isoformat(),
            "location": self.location,
        }


@dataclass
class StoreDiff:
    """Roots in one store and not in the other.

    `changed` pairs a root of A with a root of B that has the same subject and key
    but a different certificate, such as a root re-issued with a later notAfter.
    Those pairs are left out of `only_in_a` and `only_in_b`.
    """

    a: str
    b: str
    a_count: int
    b_count: int
    common: int
    only_in_a: list[StoreEntry]
    only_in_b: list[StoreEntry]
    changed: list[tuple[StoreEntry, StoreEntry]]

    @property
    def identical(self) -> bool:
        """Return whether both stores hold the same certificates."""
        return not (self.only_in_a or self.only_in_b or self.changed)

    def to_json(self) -> dict[str, Any]:
        """Return the JSON form of the comparison."""
        return {
            "a": {"source": self.a, "certificates": self.a_count},
            "b": {"source": self.b, "certificates": self.b_count},
            "common": self.common,
            "only_in_a": [e.to_json() for e in self.only_in_a],
            "only_in_b": [e.to_json() for e in self.only_in_b],
            "changed": [{"a": a.to_json(), "b": b.to_json()} for a, b in self.changed],
        }


def _identity(entry: CertificateEntry) -> tuple[str, bytes]:
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    key = entry.certificate.public_key().public_bytes(
        Encoding.DER, PublicFormat.SubjectPublicKeyInfo
    )
    return entry.subject, key


def diff_stores(a: LoadedSource, b: LoadedSource) -> StoreDiff:
    """Compare two stores by certificate fingerprint."""
    a_entries = {e.fingerprint: e for e in a.parsed.certificates}
    b_entries = {e.fingerprint: e for e in b.parsed.certificates}
    only_a = [e for fp, e in a_entries.items() if fp not in b_entries]
    only_b = [e for fp, e in b_entries.items() if fp not in a_entries]

    b_by_identity = {_identity(e): e for e in only_b}
    changed = []
    for entry in list(only_a):
        partner = b_by_identity.get(_identity(entry))
        if partner is not None:
            changed.append((StoreEntry.of(entry), StoreEntry.of(partner)))
            only_a.remove(entry)
            only_b.remove(partner)

    def by_subject(entries: list[CertificateEntry]) -> list[StoreEntry]:
        return sorted((StoreEntry.of(e) for e in entries), key=lambda e: e.subject)

    return StoreDiff(
        a=a.label,
        b=b.label,
        a_count=len(a_entries),
        b_count=len(b_entries),
        common=len(a_entries.keys() & b_entries.keys()),
        only_in_a=by_subject(only_a),
        only_in_b=by_subject(only_b),
        changed=sorted(changed, key=lambda pair: pair[0].subject),
    )


def describe_not_after(entry: StoreEntry, now: dt.datetime) -> str:
    """Return the notAfter date, marked when it has passed."""
    text = format_date(entry.not_after)
    return f"{text} (expired)" if entry.not_after < now else text
