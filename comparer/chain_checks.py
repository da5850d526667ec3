"""Findings about the chain a server sends, and warnings about certificates that
expire soon anywhere on the served chain or on a verified path."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID
from rich.console import Console
from rich.text import Text

from comparer.bundle_checks import format_date, is_self_signed
from comparer.bundle_model import CertificateEntry
from comparer.bundle_server import build_chain
from comparer.chain import ChainContext, TrustPath, certificate_role, common_name
from comparer.model import TargetReport

DEFAULT_WARN_DAYS = 30
_EKU_NAMES = {
    ExtendedKeyUsageOID.SERVER_AUTH: "serverAuth",
    ExtendedKeyUsageOID.CLIENT_AUTH: "clientAuth",
    ExtendedKeyUsageOID.CODE_SIGNING: "codeSigning",
    ExtendedKeyUsageOID.EMAIL_PROTECTION: "emailProtection",
    ExtendedKeyUsageOID.TIME_STAMPING: "timeStamping",
    ExtendedKeyUsageOID.OCSP_SIGNING: "OCSPSigning",
}


def _finding(
    code: str,
    severity: str,
    text: str,
    *,
    entry: CertificateEntry | None = None,
    position: int | None = None,
    **extra: Any,
) -> dict[str, Any]:
    item: dict[str, Any] = {"code": code, "severity": severity, "text": text}
    if entry is not None:
        item.update(position=position, subject=entry.subject, sha256=entry.fingerprint)
    item.update(extra)
    return item


def _quoted(entry: CertificateEntry) -> str:
    return f"'{common_name(entry.certificate.subject)}'"


def _extension(
    certificate: x509.Certificate, kind: type[x509.ExtensionType]
) -> x509.ExtensionType | None:
    try:
        return certificate.extensions.get_extension_for_class(kind).value
    except x509.ExtensionNotFound:
        return None


def ca_issuers_urls(certificate: x509.Certificate) -> list[str]:
    """Return the caIssuers URLs of the certificate's AIA extension (never fetched)."""
    access = _extension(certificate, x509.AuthorityInformationAccess)
    if not isinstance(access, x509.AuthorityInformationAccess):
        return []
    return [
        description.access_location.value
        for description in access
        if description.access_method == AuthorityInformationAccessOID.CA_ISSUERS
        and isinstance(description.access_location, x509.UniformResourceIdentifier)
    ]


def reference_path(context: ChainContext) -> TrustPath | None:
    """Return the first complete path of a readable store, None if no store has one."""
    for path in context.paths.values():
        if path.complete:
            return path
    return None


# --- findings -----------------------------------------------------------------------


def served_chain_findings(context: ChainContext) -> list[dict[str, Any]]:
    """Return every finding about the served chain, most serious first."""
    served = list(context.served.certificates)
    if not served:
        return []
    in_order = build_chain(served)
    findings = [
        *find_missing_intermediate(context, in_order),
        *find_leaf_usage(context),
        *find_expired_served(context, in_order),
        *find_wrong_order(context, in_order),
        *find_duplicates(context),
        *find_unrelated(context, in_order),
        *find_root_included(context, in_order),
    ]
    rank = {"error": 0, "warning": 1, "info": 2}
    return sorted(findings, key=lambda item: rank[item["severity"]])


def find_missing_intermediate(
    context: ChainContext, in_order: Sequence[CertificateEntry]
) -> list[dict[str, Any]]:
    """Report a leaf sent without its issuer that no readable store has either."""
    leaf = in_order[0]
    if len(in_order) > 1 or is_self_signed(leaf.certificate):
        return []
    if any(anchors.issuers_of(leaf) for anchors in context.anchors.values()):
        return []
    issuer = common_name(leaf.certificate.issuer)
    urls = ca_issuers_urls(leaf.certificate)
    if urls:
        aia = (
            f"The leaf names it at {', '.join(urls)} (AIA caIssuers): Chrome and "
            "the macOS and Windows verifiers fetch it from there, but Python and "
            "OpenSSL never do, so they reject the chain."
        )
    else:
        aia = (
            "The leaf has no AIA caIssuers URL either, so even the verifiers that "
            "fetch missing intermediates cannot find it."
        )
    return [
        _finding(
            "missing-intermediate",
            "error",
            f"the server sends the leaf without the intermediate '{issuer}' that "
            f"issued it. {aia} Append the intermediate to the server's certificate "
            "file.",
            entry=leaf,
            position=0,
            issuer=leaf.certificate.issuer.rfc4514_string(),
            aia_ca_issuers=urls,
        )
    ]


def find_leaf_usage(context: ChainContext) -> list[dict[str, Any]]:
    """Report a leaf whose extendedKeyUsage or keyUsage forbids TLS server use."""
    leaf = context.served.certificates[0]
    certificate = leaf.certificate
    problems = []
    usages = _extension(certificate, x509.ExtendedKeyUsage)
    if isinstance(usages, x509.ExtendedKeyUsage):
        allowed = {
            ExtendedKeyUsageOID.SERVER_AUTH,
            ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE,
        }
        if not allowed & set(usages):
            names = ", ".join(_EKU_NAMES.get(oid, oid.dotted_string) for oid in usages)
            problems.append(
                f"its extendedKeyUsage ({names or 'empty'}) lacks serverAuth, so "
                "clients reject it with 'unsupported certificate purpose'"
            )
    key_usage = _extension(certificate, x509.KeyUsage)
    if isinstance(key_usage, x509.KeyUsage):
        is_rsa = isinstance(certificate.public_key(), rsa.RSAPublicKey)
        if not key_usage.digital_signature and not (
            is_rsa and key_usage.key_encipherment
        ):
            problems.append(
                "its keyUsage allows neither digitalSignature nor, for RSA, "
                "keyEncipherment, which a TLS server key needs"
            )
        elif not key_usage.digital_signature:
            problems.append(
                "its keyUsage has keyEncipherment but not digitalSignature, so only "
                "TLS 1.2 RSA key exchange can use it and TLS 1.3 cannot"
            )
    return [
        _finding(
            "leaf-usage",
            "error",
            f"the leaf {_quoted(leaf)} is not usable by a TLS server: {problem}. "
            "Reissue it with extendedKeyUsage serverAuth and keyUsage "
            "digitalSignature.",
            entry=leaf,
            position=0,
        )
        for problem in problems
    ]


def find_expired_served(
    context: ChainContext, in_order: Sequence[CertificateEntry]
) -> list[dict[str, Any]]:
    """Report expired CA certificates that the server sends.

    One that no modern path uses, while a valid anchor with its subject and key is
    trusted, is a cross-certificate: OpenSSL 1.1.0+ and Python try trusted
    certificates first and skip it, but OpenSSL 1.0.x follows the chain as sent.
    """
    path = reference_path(context)
    on_path = {e.fingerprint for e in path.certificates} if path else set()
    findings = []
    for position, entry in enumerate(context.served.certificates):
        if position == 0 or entry.certificate.not_valid_after_utc >= context.at:
            continue
        expired = format_date(entry.certificate.not_valid_after_utc)
        sent = (
            f"the server sends {_quoted(entry)} (#{position}), which expired on "
            f"{expired}"
        )
        if entry.fingerprint in on_path or (path is None and entry in in_order):
            role = certificate_role(entry, position)
            findings.append(
                _finding(
                    "expired-on-path",
                    "error",
                    f"{sent} and is the {role} of the chain; install its renewed "
                    "version.",
                    entry=entry,
                    position=position,
                )
            )
            continue
        anchor = path.anchor if path is not None else None
        if anchor is not None and _same_subject_and_key(entry, anchor):
            code = "expired-cross-certificate"
            sent = sent.replace("sends ", "sends a cross-certificate for ", 1)
            modern = f"modern clients use the valid {_quoted(anchor)} from their store"
        else:
            code = "expired-unused"
            modern = "modern clients build a path without it"
        if entry in in_order:
            old = (
                "but clients that follow the chain as sent (OpenSSL 1.0.x, as with "
                "AddTrust in 2020 and DST Root CA X3 in 2021) fail on it"
            )
        else:
            old = "and it is not part of the leaf's chain"
        findings.append(
            _finding(
                code,
                "warning",
                f"{sent} and was issued by "
                f"'{common_name(entry.certificate.issuer)}'; {modern}, {old}. "
                "Remove it from the served chain.",
                entry=entry,
                position=position,
            )
        )
    return findings


def _same_subject_and_key(
    entry: CertificateEntry, anchor: CertificateEntry | None
) -> bool:
    if anchor is None:
        return False
    return (
        entry.certificate.subject == anchor.certificate.subject
        and entry.certificate.public_key() == anchor.certificate.public_key()
    )


def find_wrong_order(
    context: ChainContext, in_order: Sequence[CertificateEntry]
) -> list[dict[str, Any]]:
    """Report a chain whose certificates are not each followed by their issuer."""
    positions = [_position(context, entry) for entry in in_order]
    if positions == sorted(positions):
        return []
    sent = " -> ".join(f"#{p}" for p in positions)
    return [
        _finding(
            "wrong-order",
            "warning",
            f"the chain runs {sent} in the order sent; TLS 1.2 (RFC 5246) requires "
            "each certificate to be followed by its issuer. Current clients reorder "
            "it, older ones may not: list the intermediates from the leaf upwards.",
            order=positions,
        )
    ]


def _position(context: ChainContext, entry: CertificateEntry) -> int:
    position = context.position(entry)
    return -1 if position is None else position


def find_duplicates(context: ChainContext) -> list[dict[str, Any]]:
    """Report each certificate that the server sends more than once."""
    first: dict[str, int] = {}
    findings = []
    for position, entry in enumerate(context.served.certificates):
        earlier = first.setdefault(entry.fingerprint, position)
        if earlier != position:
            findings.append(
                _finding(
                    "duplicate",
                    "warning",
                    f"the server sends {_quoted(entry)} twice (#{earlier} and "
                    f"#{position}); remove the copy from the certificate file.",
                    entry=entry,
                    position=position,
                )
            )
    return findings


def find_unrelated(
    context: ChainContext, in_order: Sequence[CertificateEntry]
) -> list[dict[str, Any]]:
    """Report served certificates that belong to no path from the leaf."""
    path = reference_path(context)
    related = {entry.fingerprint for entry in in_order}
    if path is not None:
        related |= {entry.fingerprint for entry in path.certificates}
    findings = []
    for position, entry in enumerate(context.served.certificates):
        if entry.fingerprint in related:
            continue
        if entry.certificate.not_valid_after_utc < context.at:
            continue  # reported as an expired certificate
        related.add(entry.fingerprint)
        findings.append(
            _finding(
                "unrelated-certificate",
                "warning",
                f"the server sends {_quoted(entry)} (#{position}), which is not part "
                "of the leaf's chain; it only adds bytes to every handshake. Remove "
                "it from the certificate file.",
                entry=entry,
                position=position,
            )
        )
    return findings


def find_root_included(
    context: ChainContext, in_order: Sequence[CertificateEntry]
) -> list[dict[str, Any]]:
    """Report a self-signed root at the top of the served chain."""
    top = in_order[-1]
    if len(in_order) < 2 or not is_self_signed(top.certificate):
        return []
    trusted = [
        stack for stack, anchors in context.anchors.items() if anchors.contains(top)
    ]
    if trusted:
        where = (
            "clients use their own copy from their store, so the served one only "
            "adds bytes (RFC 8446 lets the server leave it out)"
        )
    elif context.anchors:
        where = (
            "no store that comparer read contains it, and sending it does not make "
            "clients trust it"
        )
    else:
        where = "clients use the copy in their own store, if they have one"
    return [
        _finding(
            "root-included",
            "info",
            f"the server sends the root {_quoted(top)}; {where}.",
            entry=top,
            position=_position(context, top),
        )
    ]


# --- expiry warnings ----------------------------------------------------------------


def expiry_warnings(
    context: ChainContext, verified_stacks: Iterable[str], *, warn_days: int
) -> list[dict[str, Any]]:
    """Warn about each certificate on the served chain or on a verified stack's path
    that is still valid but expires within `warn_days` days."""
    candidates: list[tuple[CertificateEntry, int | None]] = [
        (entry, index) for index, entry in enumerate(context.served.certificates)
    ]
    for stack in verified_stacks:
        path = context.paths.get(stack)
        if path is not None and path.anchor is not None:
            candidates.append((path.anchor, None))
    warnings = []
    seen: set[str] = set()
    for entry, position in candidates:
        if entry.fingerprint in seen:
            continue
        seen.add(entry.fingerprint)
        warning = _expiry_warning(entry, position, at=context.at, warn_days=warn_days)
        if warning is not None:
            warnings.append(warning)
    return warnings


def _expiry_warning(
    entry: CertificateEntry, position: int | None, *, at: dt.datetime, warn_days: int
) -> dict[str, Any] | None:
    not_after = entry.certificate.not_valid_after_utc
    left = not_after - at
    if left < dt.timedelta(0) or left > dt.timedelta(days=warn_days):
        return None
    role = certificate_role(entry, position)
    where = "served" if position is not None else "trust anchor"
    days = left.days
    if days == 0:
        when = "today"
    elif days == 1:
        when = "in 1 day"
    else:
        when = f"in {days} days"
    return {
        "code": "expires-soon",
        "role": role,
        "subject": entry.subject,
        "sha256": entry.fingerprint,
        "position": position,
        "days_left": days,
        "not_after": not_after.isoformat(),
        "text": f"{role} {_quoted(entry)} ({where}) expires {when}, on "
        f"{format_date(not_after)}",
    }


# --- table output -------------------------------------------------------------------

# Lines of each kind under the table; the rest are in the JSON output.
MAX_PRINTED = 30
_FINDING_STYLES = {"error": "red", "warning": "yellow", "info": "dim"}


def _target_name(report: TargetReport) -> str:
    if report.label:
        return f"{report.target.raw} [{report.label}]"
    return report.target.raw


def print_chain_notes(console: Console, reports: Sequence[TargetReport]) -> None:
    """Print each target's expiry warnings, then its served-chain findings."""
    warnings = [
        (f"⚠ {_target_name(report)}: {item['text']}", "yellow")
        for report in reports
        for item in report.warnings
    ]
    findings = [
        (
            f"• {_target_name(report)}: {item['text']}",
            _FINDING_STYLES.get(item.get("severity", ""), ""),
        )
        for report in reports
        for item in report.findings
    ]
    for lines, kind in ((warnings, "warnings"), (findings, "findings")):
        for text, style in lines[:MAX_PRINTED]:
            # Text, not markup: a label such as "[cn-only]" is not a style.
            console.print(Text(text, style=style))
        if len(lines) > MAX_PRINTED:
            console.print(
                f"… and {len(lines) - MAX_PRINTED} more {kind} (see --json)",
                style="dim",
            )
